"""tarvis-fast: TarViS on today's PyTorch, with Triton kernels."""
