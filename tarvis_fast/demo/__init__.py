"""The bundled demo: procedural videos for all four tasks, a small TarViS trained on them, inference and metrics on
their val sets with the same code paths as the real benchmarks, and an HTML report (`python -m tarvis_fast.demo`;
see `demo.cli`)."""
