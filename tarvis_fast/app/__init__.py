"""The interactive web app (`python -m tarvis_fast.app CKPT`, `pip install -e .[app]`): upload a video or use the
sample, pick a task, paint or click the targets, and get the overlay video, a table and the masks.

A thin layer over `VideoPredictor`: `inputs` turns what the page gives into `segment` arguments, `run` writes the
results as `infer.py --video` does and what the page shows, `ui` is the Gradio page. Importing this package
imports neither gradio nor torch.
"""
