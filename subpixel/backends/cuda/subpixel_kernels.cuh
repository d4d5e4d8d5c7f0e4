// subpixel CUDA kernels: pixel shuffle/unshuffle as one gather, and the fused
// sub-pixel convolution epilogue (bias + shuffle of a GEMM's LR output).
//
// The same source compiles with nvcc/NVRTC for the GPU and, with
// SUBPIXEL_HOST_EMULATION defined, as plain C++ whose grid runs as loops
// (tests/cuda_host/), so that the indexing is tested on machines without a GPU.
// The kernels use no shared memory and no warp intrinsics for that reason.
//
// Geometry (built in Python by subpixel/backends/_cuda_geometry.py): the output
// is walked in C order over `ndim` axes; geom[k] is the size of output axis k
// and geom[NDIM + k] the input stride (in elements) of that axis.  For the
// epilogue, geom[2 * NDIM] is the input stride of the LR channel axis and
// geom[2 * NDIM + 1] the number of LR channels (for the bias).
#pragma once

#ifdef SUBPIXEL_HOST_EMULATION
#include "host_shim.h"
#else
#define SP_KERNEL __global__
#define SP_DEVICE __device__ __forceinline__
#define SP_RESTRICT __restrict__
#define SP_UNROLL _Pragma("unroll")
#endif

namespace subpixel {

// Data moves as raw bytes: kernels are keyed on the element size only.
struct alignas(16) u128 {
    unsigned long long lo, hi;
};

template <typename I, int NDIM>
SP_DEVICE I input_offset(I i, const long long* SP_RESTRICT geom) {
    I offset = 0;
    SP_UNROLL
    for (int k = NDIM - 1; k >= 0; --k) {
        const I size = static_cast<I>(geom[k]);
        const I coord = i % size;
        i /= size;
        offset += coord * static_cast<I>(geom[NDIM + k]);
    }
    return offset;
}

// out[i] = in[input_offset(i)]: consecutive threads write consecutive elements
// (coalesced stores); a grid-stride loop covers any size.
template <typename T, typename I, int NDIM>
SP_KERNEL void rearrange(const T* SP_RESTRICT src, T* SP_RESTRICT dst,
                         const long long* SP_RESTRICT geom, I total) {
    const I step = static_cast<I>(blockDim.x) * static_cast<I>(gridDim.x);
    for (I i = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += step) {
        dst[i] = src[input_offset<I, NDIM>(i, geom)];
    }
}

// The sub-pixel convolution epilogue: the HR output gathered from the GEMM's LR
// output, with the LR channel's bias added on the way.
template <typename T, typename I, int NDIM, bool HAS_BIAS>
SP_KERNEL void shuffle_bias(const T* SP_RESTRICT lr, const T* SP_RESTRICT bias, T* SP_RESTRICT hr,
                            const long long* SP_RESTRICT geom, I total) {
    const I step = static_cast<I>(blockDim.x) * static_cast<I>(gridDim.x);
    const I channel_stride = static_cast<I>(geom[2 * NDIM]);
    const I channels = static_cast<I>(geom[2 * NDIM + 1]);
    for (I i = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += step) {
        const I offset = input_offset<I, NDIM>(i, geom);
        T value = lr[offset];
        if (HAS_BIAS) {
            value += bias[(offset / channel_stride) % channels];
        }
        hr[i] = value;
    }
}

}  // namespace subpixel
