/* Vitrine fast kernels: float32 GEMM with fused bias/activation and a depthwise convolution.
 *
 * One source set, two targets:
 *   - wasm32 side module (clang --target=wasm32-unknown-emscripten -msimd128), loaded in
 *     Pyodide through ctypes.CDLL (emscripten dlopen);
 *   - native shared library for CPython tests (gcc or clang, plain -O3, baseline SSE2 on x86-64).
 * SIMD is written once with GCC/Clang vector extensions (see docs/fastpath.md for why).
 *
 * ABI: every dimension / leading dimension / stride is int32_t and every array is a pointer, so the
 * ctypes signatures are identical on wasm32 and on 64-bit hosts. Functions return VK_OK (0) or a
 * negative VK_E* code; they never allocate (the caller passes a workspace), never print, never abort.
 * Layout is row-major throughout; convolution tensors are NHWC.
 */
#ifndef VITRINE_KERNELS_H
#define VITRINE_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever a signature or the packed layout changes; Python refuses a mismatching library. */
#define VK_ABI_VERSION 11

/* The emscripten target hides symbols by default; the side module must export the API. */
#define VK_API __attribute__((visibility("default")))

/* Width of one packed B panel (columns). The micro-kernel computes VK_MR x VK_NR tiles of C. */
#define VK_NR 8
#define VK_MR 4

/* Fused activations. */
#define VK_ACT_LINEAR 0
#define VK_ACT_RELU 1
#define VK_ACT_RELU6 2
#define VK_ACT_HARD_SWISH 3 /* x * (clip(x + 3, 0, 6) * (1/6)), the rounding order of Keras / app.kernels */
#define VK_ACT_COUNT 4

/* Status codes. */
#define VK_OK 0
#define VK_E_DIM (-1)        /* a dimension is negative (or a conv dimension is zero) */
#define VK_E_LD (-2)         /* a leading dimension is smaller than the row length */
#define VK_E_ACTIVATION (-3) /* unknown activation code */
#define VK_E_NULL (-4)       /* a required pointer is NULL */
#define VK_E_STRIDE (-5)     /* a convolution stride / dilation is < 1 */

VK_API int32_t vk_abi_version(void);

/* Number of floats vk_pack_b writes for a K x N matrix: ceil(N / VK_NR) * VK_NR * K. */
VK_API int32_t vk_packed_b_floats(int32_t K, int32_t N);

/* Packs B[K,N] (row stride ldb) into panels of VK_NR columns: panel p holds rows 0..K-1 of
 * columns p*VK_NR .. p*VK_NR+VK_NR-1 contiguously (K x VK_NR), the last panel zero-padded. */
VK_API int32_t vk_pack_b(int32_t K, int32_t N, const float *B, int32_t ldb, float *packed);

/* C[M,N] = act(A[M,K] @ B + bias[N]) with B already packed by vk_pack_b.
 * bias may be NULL. C must not overlap A or packed_b. */
VK_API int32_t vk_sgemm_packed(int32_t M, int32_t N, int32_t K, const float *A, int32_t lda,
                        const float *packed_b, const float *bias, float *C, int32_t ldc,
                        int32_t activation);

/* Same as vk_sgemm_packed but packs B[K,N] (row stride ldb) into `workspace` first;
 * workspace must hold vk_packed_b_floats(K, N) floats. */
VK_API int32_t vk_sgemm(int32_t M, int32_t N, int32_t K, const float *A, int32_t lda, const float *B,
                 int32_t ldb, const float *bias, float *C, int32_t ldc, int32_t activation,
                 float *workspace);

/* 2-D convolution, NHWC, groups handled by the caller through pointer offsets and pixel strides,
 * without an im2col buffer ("indirect GEMM": each register tile of VK_MR output pixels reads its
 * input pixels in place, tap by tap; taps in the zero padding read `zeros`).
 *   x: input pixel (n, h, w) starts at x + ((n*H + h)*W + w) * x_pixel_stride, Cin channels used;
 *   w: the [KH*KW*Cin, Cout] weight matrix (HWIO kernel reshaped), either packed by vk_pack_b
 *      (w_ld = 0) or row-major with row stride w_ld >= Cout (the model's kernel as loaded, no
 *      packed copy kept): then each block of it is packed into `workspace` while it is used;
 *   workspace: vk_conv2d_workspace_floats() floats of scratch (weight blocks, and the input rows
 *      of one tile when Cin is small);
 *   y: output pixel (n, oh, ow) starts at y + ((n*OH + oh)*OW + ow) * y_pixel_stride, Cout written;
 *   zeros: at least Cin zero floats; bias[Cout] may be NULL. OH/OW as for vk_depthwise_conv2d;
 *   scale[Cout] may be NULL; when given, y = act(conv * scale + bias) (a batch-norm applied in the
 *   epilogue, so the unscaled weights need no folded copy);
 *   in_scale / in_shift [Cin] (both NULL or both given): a prologue, the convolution reads
 *   in_act(x * in_scale + in_shift) instead of x (DenseNet's batch-norm + ReLU before a 1x1 conv,
 *   rounded as vk_scale_shift does), the zero padding staying zero. */
VK_API int32_t vk_conv2d(int32_t N, int32_t H, int32_t W, const float *x, int32_t x_pixel_stride,
                         int32_t Cin, int32_t KH, int32_t KW, int32_t stride_h, int32_t stride_w,
                         int32_t dil_h, int32_t dil_w, int32_t pad_top, int32_t pad_left, int32_t OH,
                         int32_t OW, const float *w, int32_t w_ld, int32_t Cout, const float *bias, float *y,
                         int32_t y_pixel_stride, int32_t activation, const float *zeros,
                         const float *scale, float *workspace, const float *in_scale,
                         const float *in_shift, int32_t in_activation);

/* Floats of the scratch workspace vk_conv2d needs. */
VK_API int32_t vk_conv2d_workspace_floats(void);

/* Depthwise 2-D convolution, NHWC, channel multiplier 1, any kernel size.
 * x[N,H,W,C], weights[KH,KW,C], bias[C] (may be NULL), y[N,OH,OW,C] with
 * OH = (H + pad_top + pad_bottom - dil_h*(KH-1) - 1) / stride_h + 1 (same for OW; caller computes
 * and passes them so both sides agree). Padding is zero padding. */
VK_API int32_t vk_depthwise_conv2d(int32_t N, int32_t H, int32_t W, int32_t C, const float *x,
                            int32_t KH, int32_t KW, const float *weights, const float *bias,
                            int32_t stride_h, int32_t stride_w, int32_t dil_h, int32_t dil_w,
                            int32_t pad_top, int32_t pad_left, int32_t OH, int32_t OW, float *y,
                            int32_t activation);

/* y[r, c] = act(x[r * x_row_stride + c] * scale[c] + shift[c]) for r < rows, c < C, y contiguous
 * rows of C: folded batch-norm / Rescaling on the channel axis with a fused activation. x rows may
 * be spaced wider than C (the first C channels of a concat buffer). y may equal x when the stride
 * is C. */
VK_API int32_t vk_scale_shift(int32_t rows, int32_t C, const float *x, int32_t x_row_stride,
                              const float *scale, const float *shift, float *y, int32_t activation);

/* 3x3 convolution, stride 1, dilation 1, groups 1, by Winograd F(2x2, 3x3) (16 multiplies per
 * 2x2 outputs and channel pair instead of 36). Arguments as for vk_conv2d, with u the filters
 * transformed by vk_winograd3x3_filters, OH/OW the output size (pads at the bottom / right are
 * implied by them) and workspace holding vk_winograd3x3_workspace_floats(Cin, Cout) floats.
 * Rounding differs from the direct sum (transforms add before and after the products): see the
 * error bound in tests/fastpath/test_winograd.py. */
VK_API int32_t vk_conv2d_winograd3x3(int32_t N, int32_t H, int32_t W, const float *x, int32_t x_pixel_stride,
                                     int32_t Cin, int32_t pad_top, int32_t pad_left, int32_t OH, int32_t OW,
                                     const float *u, int32_t Cout, const float *bias, float *y,
                                     int32_t y_pixel_stride, int32_t activation, const float *scale,
                                     float *workspace);

/* The Winograd filters G g G^T of a row-major [9*Cin, Cout] HWIO 3x3 kernel (row stride w_ld),
 * written to u as 16 matrices [Cin x Cout] packed like vk_pack_b (vk_winograd3x3_filter_floats). */
VK_API int32_t vk_winograd3x3_filters(int32_t Cin, int32_t Cout, const float *w, int32_t w_ld, float *u);

/* Floats of vk_winograd3x3_filters' output and of vk_conv2d_winograd3x3's workspace
 * (VK_E_DIM if they would not fit an int32). */
VK_API int32_t vk_winograd3x3_filter_floats(int32_t Cin, int32_t Cout);
VK_API int32_t vk_winograd3x3_workspace_floats(int32_t Cin, int32_t Cout);

/* Pooling modes of vk_pool2d. */
#define VK_POOL_MAX 0
#define VK_POOL_AVG 1             /* sum / the number of cells inside the input (TF / Keras) */
#define VK_POOL_AVG_INCLUDE_PAD 2 /* sum * (1 / (PH * PW)), padding counted as 0 (also: no padding) */

/* Max / average pooling, NHWC: x[N,H,W,C], a PH x PW window moved by the strides over the input
 * padded by pad_top / pad_left (the bottom / right padding is implied by OH / OW), y[N,OH,OW,C].
 * mode is a VK_POOL_* code (anything else: VK_E_ACTIVATION). */
VK_API int32_t vk_pool2d(int32_t N, int32_t H, int32_t W, int32_t C, const float *x, int32_t PH, int32_t PW,
                         int32_t stride_h, int32_t stride_w, int32_t pad_top, int32_t pad_left, int32_t OH,
                         int32_t OW, float *y, int32_t mode);

#ifdef __cplusplus
}
#endif

#endif /* VITRINE_KERNELS_H */
