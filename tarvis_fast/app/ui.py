"""The Gradio page: layout and callbacks, each a few lines over `inputs` and `run`.

The run callback is stateless (its inputs are the upload, the task and the prompts as the page shows them), so
that it is also an API endpoint, `/run`, which `gradio_client` calls as the tests do:

    client.predict([handle_file("clip.mp4")], "pet", None, 0, None, "120,80; 30,40", api_name="/run")
"""
from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr
import numpy as np

from tarvis_fast.app.inputs import (
    MAX_OBJECTS,
    VideoSource,
    add_point,
    draw_points,
    masks_from_editor,
    object_colours,
    parse_points,
    prepare_video,
    read_frame,
    write_sample_video,
)
from tarvis_fast.app.run import TABLE_HEADERS, new_run_dir, segment_video
from tarvis_fast.inference.predictor import VideoPredictor
from tarvis_fast.inference.video import VOCABULARIES
from tarvis_fast.tasks import Task

TASK_CHOICES = [("VOS: paint the objects", "vos"), ("PET: click a point per object", "pet"),
                ("VIS: instances of a vocabulary", "vis"), ("VPS: panoptic, a vocabulary", "vps")]
VOCABULARY_LABELS = {"youtube_vis": "YouTube-VIS", "ovis": "OVIS", "kitti_step": "KITTI-STEP",
                     "cityscapes_vps": "Cityscapes-VPS", "vipseg": "VIPSeg"}
API_MAX_FRAME = 100_000
PAGE_ERRORS = (ValueError, OSError)  # bad input: shown in the page; anything else is a bug (gradio logs it)
Callback = TypeVar("Callback", bound=Callable[..., Any])


@dataclass(frozen=True)
class AppSettings:
    max_upload_mb: float = 100.0
    segment_options: dict[str, Any] = field(default_factory=dict)  # to `VideoPredictor.segment` (e.g. min_dim)
    keep_runs_s: float = 3600.0     # a run's files are deleted when a later run starts this much later


def _in_page(callback: Callback) -> Callback:
    """A bad input ends the callback with its message in the page (gr.Error) instead of a server error."""
    @functools.wraps(callback)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except PAGE_ERRORS as err:
            raise gr.Error(str(err), print_exception=False) from None
    return wrapped  # type: ignore[return-value]


class _App:
    """The callbacks, around one predictor and the app's temporary folder."""

    def __init__(self, predictor: VideoPredictor, workdir: Path, settings: AppSettings) -> None:
        self.predictor, self.settings = predictor, settings
        self.sample = write_sample_video(workdir)
        self.uploads, self.runs = workdir / "uploads", workdir / "runs"
        # The page asks again at every frame change and click; Gradio names uploads by their content.
        self._sources = functools.lru_cache(maxsize=16)(self._prepare)

    def _prepare(self, files: tuple[str, ...]) -> VideoSource:
        return prepare_video(files, self.sample, self.uploads, self.settings.max_upload_mb)

    def source(self, files: Sequence[str] | None) -> VideoSource:
        return self._sources(tuple(files or ()))

    def show_video(self, files: Sequence[str] | None) -> tuple:
        """A new upload (or none: the sample): its first frame to paint or click on, the points cleared."""
        source = self.source(files)
        frame = read_frame(source, 0)
        height, width = source.size
        info = f"**{source.name}**: {source.num_frames} frames, {width}x{height}"
        return gr.Slider(maximum=max(source.num_frames - 1, 1), value=0, interactive=source.num_frames > 1), \
            frame, frame, "", info

    def show_frame(self, files: Sequence[str] | None, index: int, points: str) -> tuple[np.ndarray, np.ndarray]:
        """The frame to paint or click on (the editor starts blank on it), with the points given on it."""
        source = self.source(files)
        frame = read_frame(source, int(index))
        return frame, draw_points(frame, parse_points(points, source), int(index))

    def click(self, files: Sequence[str] | None, index: int, points: str, event: gr.SelectData) -> tuple[str, Any]:
        """A click on the frame: one more object, at the clicked pixel."""
        source = self.source(files)
        x, y = event.index
        points = add_point(points, x, y, int(index))
        return points, draw_points(read_frame(source, int(index)), parse_points(points, source), int(index))

    def clear_points(self, files: Sequence[str] | None, index: int) -> tuple[str, np.ndarray]:
        return "", read_frame(self.source(files), int(index))

    def run(self, files: Sequence[str] | None, task: str, vocabulary: str | None, index: float,
            editor: dict | None, points: str | None,
            progress: gr.Progress = gr.Progress()) -> tuple[str, list[list[Any]], str, str]:
        """The task on the video; the overlay video, the table, the zip of masks, and a line saying what ran."""
        source = self.source(files)
        task = Task.parse(task).short_name
        masks, pet_points, index = None, None, int(index or 0)
        if task == "vos":
            if not 0 <= index < source.num_frames:
                raise ValueError(f"frame {index} is not in the video (frames 0..{source.num_frames - 1})")
            ids = masks_from_editor(editor, source.size)
            if not ids.any():
                raise ValueError("VOS needs at least one object: paint it on the frame with the brush, one colour "
                                 "per object")
            masks = {index: ids}
        elif task == "pet":
            pet_points = parse_points(points or "", source)
            if not pet_points:
                raise ValueError("PET needs at least one point: click on each object in the frame")
        if task in ("vis", "vps"):
            choices = VOCABULARIES[Task.parse(task)]
            if vocabulary not in choices:
                raise ValueError(f"choose a vocabulary for {task.upper()}: {', '.join(choices)}")
        else:
            vocabulary = None
        progress(0, desc="Loading the video")
        outputs = segment_video(self.predictor, source, task, new_run_dir(self.runs, self.settings.keep_runs_s),
                                vocabulary=vocabulary, masks=masks, points=pet_points,
                                options=self.settings.segment_options,
                                on_frame=lambda done, total: progress((done, total), desc="Segmenting",
                                                                      unit="frames"))
        objects = sum(row[1] != "stuff" for row in outputs.table)
        status = (f"{task.upper()} on **{source.name}**: {outputs.num_frames} frames, {objects} "
                  f"object{'s' * (objects != 1)}")
        return str(outputs.video), outputs.table, str(outputs.archive), status


def _show_task(task: str) -> tuple:
    """The vocabulary choice for VIS/VPS, the editor for VOS, the points for PET."""
    parsed = Task.parse(task)
    choices = [(VOCABULARY_LABELS.get(name, name), name) for name in VOCABULARIES.get(parsed, ())]
    return (gr.Dropdown(choices=choices, value=choices[0][1] if choices else None, visible=bool(choices)),
            gr.ImageEditor(visible=parsed is Task.VOS), gr.Group(visible=parsed is Task.PET))


def build_app(predictor: VideoPredictor, workdir: Path, settings: AppSettings = AppSettings()) -> gr.Blocks:
    """The page, serving `predictor`; uploads and runs go under `workdir`, Gradio's own copies of files under
    $GRADIO_TEMP_DIR (which `python -m tarvis_fast.app` points into `workdir`)."""
    app = _App(predictor, workdir, settings)
    brush = gr.Brush(colors=[f"rgb({r}, {g}, {b})" for r, g, b in object_colours().tolist()], color_mode="fixed")
    with gr.Blocks(title="TarViS", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# TarViS: segment targets in a video\nUpload a video file or its frames (none: the sample "
                    "video), pick a task, give the objects on a frame (VOS: paint each in its own colour, up to "
                    f"{MAX_OBJECTS}; PET: click one point per object) or a vocabulary (VIS, VPS), and run.")
        with gr.Row():
            with gr.Column():
                files = gr.File(label=f"Video file or frames, up to {settings.max_upload_mb:g} MB (none: the "
                                      f"sample video)", file_count="multiple", elem_id="upload")
                info = gr.Markdown(elem_id="video-info")
                task = gr.Radio(TASK_CHOICES, value="vos", label="Task", elem_id="task")
                # Every vocabulary is a choice, so that the server takes any of them; the page offers the task's.
                vocabulary = gr.Dropdown([(VOCABULARY_LABELS.get(name, name), name)
                                          for names in VOCABULARIES.values() for name in names],
                                         label="Vocabulary", visible=False, elem_id="vocabulary")
                # The page sets the video's last frame as the maximum; this one bounds API calls, which `run` checks.
                frame_index = gr.Slider(0, API_MAX_FRAME, value=0, step=1, label="Frame the objects are given on",
                                        elem_id="frame")
                editor = gr.ImageEditor(type="numpy", image_mode="RGBA", sources=(), transforms=(), brush=brush,
                                        label="Paint each object in its own colour (object 1, 2, ... by colour)",
                                        elem_id="editor")
                with gr.Group(visible=False) as pet_group:
                    points_image = gr.Image(type="numpy", interactive=False, label="Click one point per object",
                                            elem_id="points-image")
                    points = gr.Textbox(label="Points: x,y; x,y@frame (objects 1, 2, ... in order)",
                                        elem_id="points")
                    clear = gr.Button("Clear points", elem_id="clear-points")
                run = gr.Button("Run", variant="primary", elem_id="run")
            with gr.Column():
                status = gr.Markdown(elem_id="status")
                video = gr.Video(label="Result", interactive=False, elem_id="result-video")
                table = gr.Dataframe(headers=TABLE_HEADERS, label="Objects and classes", interactive=False,
                                     elem_id="result-table")
                archive = gr.File(label="Masks: PNGs and RLE JSON (as infer.py writes them) with the overlay",
                                  interactive=False, elem_id="result-zip")

        private = {"api_visibility": "private"}
        shown = [frame_index, editor, points_image, points, info]
        demo.load(_in_page(app.show_video), files, shown, **private)
        files.change(_in_page(app.show_video), files, shown, **private)
        frame_index.release(_in_page(app.show_frame), [files, frame_index, points], [editor, points_image],
                            **private)
        task.change(_show_task, task, [vocabulary, editor, pet_group], **private)
        points_image.select(_in_page(app.click), [files, frame_index, points], [points, points_image], **private)
        clear.click(_in_page(app.clear_points), [files, frame_index], [points, points_image], **private)
        run.click(_in_page(app.run), [files, task, vocabulary, frame_index, editor, points],
                  [video, table, archive, status], api_name="run")
    return demo


def serve(demo: gr.Blocks, workdir: Path, *, host: str, port: int | None, max_upload_mb: float,
          until: threading.Event | None = None) -> str:
    """Serve the page at host:port (None: the first free port from 7860); returns its URL. With `until`, serve
    until that event is set (a signal handler sets it), then close the server; without, return at once."""
    _, url, _ = demo.launch(server_name=host, server_port=port, allowed_paths=[str(workdir)],
                            max_file_size=f"{max_upload_mb:g}mb", prevent_thread_lock=True, ssr_mode=False,
                            quiet=until is None)
    if until is not None:
        # Polled rather than one long wait: the main thread must get back to the interpreter for the signal
        # handler that sets the event to run.
        try:
            while not until.wait(0.2):
                pass
        finally:
            demo.close()
    return url
