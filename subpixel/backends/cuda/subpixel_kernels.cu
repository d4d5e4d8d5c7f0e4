// Entry point compiled by NVRTC (cupy.RawModule) and by nvcc in CI: the
// templates live in subpixel_kernels.cuh; the specialisations a call needs are
// instantiated through RawModule's name_expressions.
#include "subpixel_kernels.cuh"
