// Host emulation of the CUDA execution model for subpixel's kernels: the driver
// sets these per (block, thread) and calls the kernel body as a function.
#pragma once

struct sp_dim3 {
    unsigned int x = 1, y = 1, z = 1;
};

inline sp_dim3 blockIdx, threadIdx, blockDim, gridDim;

#define SP_KERNEL
#define SP_DEVICE inline
#define SP_RESTRICT __restrict
#define SP_UNROLL
