// Runs subpixel's CUDA kernels on the host: every (block, thread) of the grid in
// turn.  Built by tests/test_cuda_kernels.py with g++ and loaded with ctypes.
#define SUBPIXEL_HOST_EMULATION
#include "subpixel_kernels.cuh"

namespace {

template <typename T, typename I, int N>
int run_rearrange(const void* src, void* dst, const long long* geom, long long total, unsigned blocks,
                  unsigned threads) {
    gridDim.x = blocks;
    blockDim.x = threads;
    for (unsigned b = 0; b < blocks; ++b) {
        blockIdx.x = b;
        for (unsigned t = 0; t < threads; ++t) {
            threadIdx.x = t;
            subpixel::rearrange<T, I, N>(static_cast<const T*>(src), static_cast<T*>(dst), geom,
                                         static_cast<I>(total));
        }
    }
    return 0;
}

template <typename T, typename I, int N, bool B>
int run_epilogue(const void* lr, const void* bias, void* hr, const long long* geom, long long total,
                 unsigned blocks, unsigned threads) {
    gridDim.x = blocks;
    blockDim.x = threads;
    for (unsigned b = 0; b < blocks; ++b) {
        blockIdx.x = b;
        for (unsigned t = 0; t < threads; ++t) {
            threadIdx.x = t;
            subpixel::shuffle_bias<T, I, N, B>(static_cast<const T*>(lr), static_cast<const T*>(bias),
                                               static_cast<T*>(hr), geom, static_cast<I>(total));
        }
    }
    return 0;
}

template <typename T, typename I>
int by_ndim(int ndim, const void* s, void* d, const long long* g, long long n, unsigned b, unsigned t) {
    switch (ndim) {
        case 1: return run_rearrange<T, I, 1>(s, d, g, n, b, t);
        case 2: return run_rearrange<T, I, 2>(s, d, g, n, b, t);
        case 3: return run_rearrange<T, I, 3>(s, d, g, n, b, t);
        case 4: return run_rearrange<T, I, 4>(s, d, g, n, b, t);
        case 5: return run_rearrange<T, I, 5>(s, d, g, n, b, t);
        case 6: return run_rearrange<T, I, 6>(s, d, g, n, b, t);
        case 7: return run_rearrange<T, I, 7>(s, d, g, n, b, t);
        case 8: return run_rearrange<T, I, 8>(s, d, g, n, b, t);
        default: return -1;
    }
}

template <typename T>
int by_index(int bits, int ndim, const void* s, void* d, const long long* g, long long n, unsigned b,
             unsigned t) {
    return bits == 32 ? by_ndim<T, unsigned int>(ndim, s, d, g, n, b, t)
                      : by_ndim<T, long long>(ndim, s, d, g, n, b, t);
}

template <typename T, typename I, bool B>
int epi_by_ndim(int ndim, const void* l, const void* bi, void* h, const long long* g, long long n,
                unsigned b, unsigned t) {
    switch (ndim) {
        case 1: return run_epilogue<T, I, 1, B>(l, bi, h, g, n, b, t);
        case 2: return run_epilogue<T, I, 2, B>(l, bi, h, g, n, b, t);
        case 3: return run_epilogue<T, I, 3, B>(l, bi, h, g, n, b, t);
        case 4: return run_epilogue<T, I, 4, B>(l, bi, h, g, n, b, t);
        case 5: return run_epilogue<T, I, 5, B>(l, bi, h, g, n, b, t);
        case 6: return run_epilogue<T, I, 6, B>(l, bi, h, g, n, b, t);
        case 7: return run_epilogue<T, I, 7, B>(l, bi, h, g, n, b, t);
        case 8: return run_epilogue<T, I, 8, B>(l, bi, h, g, n, b, t);
        default: return -1;
    }
}

template <typename T>
int epi(int bits, int ndim, int has_bias, const void* l, const void* bi, void* h, const long long* g,
        long long n, unsigned b, unsigned t) {
    if (bits == 32) {
        return has_bias ? epi_by_ndim<T, unsigned int, true>(ndim, l, bi, h, g, n, b, t)
                        : epi_by_ndim<T, unsigned int, false>(ndim, l, bi, h, g, n, b, t);
    }
    return has_bias ? epi_by_ndim<T, long long, true>(ndim, l, bi, h, g, n, b, t)
                    : epi_by_ndim<T, long long, false>(ndim, l, bi, h, g, n, b, t);
}

}  // namespace

extern "C" int sp_rearrange(int itemsize, int bits, int ndim, const void* src, void* dst,
                            const long long* geom, long long total, unsigned blocks, unsigned threads) {
    switch (itemsize) {
        case 1: return by_index<unsigned char>(bits, ndim, src, dst, geom, total, blocks, threads);
        case 2: return by_index<unsigned short>(bits, ndim, src, dst, geom, total, blocks, threads);
        case 4: return by_index<unsigned int>(bits, ndim, src, dst, geom, total, blocks, threads);
        case 8: return by_index<unsigned long long>(bits, ndim, src, dst, geom, total, blocks, threads);
        case 16: return by_index<subpixel::u128>(bits, ndim, src, dst, geom, total, blocks, threads);
        default: return -2;
    }
}

extern "C" int sp_shuffle_bias(int is_double, int bits, int ndim, int has_bias, const void* lr,
                               const void* bias, void* hr, const long long* geom, long long total,
                               unsigned blocks, unsigned threads) {
    return is_double ? epi<double>(bits, ndim, has_bias, lr, bias, hr, geom, total, blocks, threads)
                     : epi<float>(bits, ndim, has_bias, lr, bias, hr, geom, total, blocks, threads);
}
