/* Vitrine fast kernels (see vitrine_kernels.h for the contract, docs/fastpath.md for the design).
 *
 * GEMM scheme (BLIS-like, A not packed, as XNNPACK does for weights-stationary inference):
 *   B (the weights) is packed once into VK_NR-wide panels, K-major, zero padded on the N tail;
 *   C is computed in VK_MR x VK_NR register tiles (8 f32x4 accumulators) reading A rows in place
 *   with broadcast loads; K is blocked by VK_KC so one A sliver (VK_MR x VK_KC) stays in L1 while
 *   it sweeps the VK_NC-wide block of B panels, which stays in L2 while it sweeps all rows of A.
 *   Bias is the accumulator's initial value; the activation is applied on the last K block.
 *
 * No FMA on purpose: wasm SIMD128 has none (relaxed-simd is not in every browser), and the native
 * build uses -ffp-contract=off so both targets round identically: (acc + a*b) in float32.
 */
#include "vitrine_kernels.h"

typedef float vk_f32x4 __attribute__((vector_size(16)));
typedef int32_t vk_i32x4 __attribute__((vector_size(16)));
/* Pointer-width index: 32-bit on wasm32 (no i64 address maths), 64-bit natively. */
typedef __PTRDIFF_TYPE__ vk_index;

#define VK_INLINE static inline __attribute__((always_inline))

/* K block (rows of a B panel kept hot) and N block (columns of B reused across all of A). */
#ifndef VK_KC
#define VK_KC 256
#endif
#ifndef VK_NC
#define VK_NC 256
#endif

/* Blocking of vk_conv2d over the flattened K = KH*KW*Cin rows (tap-major) and the Cout columns:
 * one VK_CONV_KC x VK_CONV_NC block of weights (128 KB) is packed into contiguous 8-column panels
 * and swept by every output pixel while it is hot in L2; one panel of it (VK_CONV_KC x 32 bytes)
 * stays in L1 while a tile of pixels runs over it. Reading a row-major HWIO kernel in place
 * instead strides by Cout floats per row, which maps a panel's rows onto a few L1 sets (at
 * Cout = 1024 all onto one) and thrashes. Partial sums wait in y between K blocks; every output
 * still adds its K products in the same order, so the result does not depend on the blocking. */
#ifndef VK_CONV_KC
#define VK_CONV_KC 256
#endif
#ifndef VK_CONV_NC
#define VK_CONV_NC 128
#endif
/* Below this many input channels a tap contributes too few K rows to pay for finding its input
 * pixel in every tile of every panel: the tile's rows of K are gathered once (a 4 x VK_CONV_KC
 * im2col of just this tile, in the workspace) and all panels read them contiguously. */
#ifndef VK_CONV_GATHER_CIN
#define VK_CONV_GATHER_CIN 16
#endif

VK_INLINE vk_f32x4 vk_load(const float *p) {
    vk_f32x4 v;
    __builtin_memcpy(&v, p, sizeof v); /* unaligned load: v128.load / movups */
    return v;
}

VK_INLINE void vk_store(float *p, vk_f32x4 v) { __builtin_memcpy(p, &v, sizeof v); }

VK_INLINE vk_f32x4 vk_splat(float x) { return (vk_f32x4){x, x, x, x}; }

/* max(v, 0) keeping NaN (like numpy.maximum): zero only lanes that compare < 0. */
VK_INLINE vk_f32x4 vk_relu(vk_f32x4 v) {
    vk_i32x4 negative = v < vk_splat(0.0f);
    return (vk_f32x4)((vk_i32x4)v & ~negative);
}

/* min(v, 6) keeping NaN. */
VK_INLINE vk_f32x4 vk_min6(vk_f32x4 v) {
    vk_i32x4 above = v > vk_splat(6.0f);
    return (vk_f32x4)(((vk_i32x4)v & ~above) | ((vk_i32x4)vk_splat(6.0f) & above));
}

VK_INLINE vk_f32x4 vk_activate(vk_f32x4 v, int32_t activation) {
    switch (activation) {
    case VK_ACT_RELU: return vk_relu(v);
    case VK_ACT_RELU6: return vk_min6(vk_relu(v));
    case VK_ACT_HARD_SWISH: return v * (vk_min6(vk_relu(v + vk_splat(3.0f))) * vk_splat(1.0f / 6.0f));
    default: return v;
    }
}

VK_INLINE float vk_activate_scalar(float v, int32_t activation) {
    vk_f32x4 lanes = vk_activate(vk_splat(v), activation);
    return lanes[0];
}

VK_INLINE int vk_bad_activation(int32_t activation) { return activation < 0 || activation >= VK_ACT_COUNT; }

int32_t vk_abi_version(void) { return VK_ABI_VERSION; }

int32_t vk_conv2d_workspace_floats(void) { return VK_CONV_KC * VK_CONV_NC + VK_MR * VK_CONV_KC; }

int32_t vk_packed_b_floats(int32_t K, int32_t N) {
    if (K < 0 || N < 0) return VK_E_DIM;
    return ((N + VK_NR - 1) / VK_NR) * VK_NR * K;
}

int32_t vk_pack_b(int32_t K, int32_t N, const float *B, int32_t ldb, float *packed) {
    if (K < 0 || N < 0) return VK_E_DIM;
    if (ldb < N) return VK_E_LD;
    if ((K > 0 && N > 0) && (B == 0 || packed == 0)) return VK_E_NULL;
    for (int32_t j0 = 0; j0 < N; j0 += VK_NR) {
        int32_t nr = N - j0 < VK_NR ? N - j0 : VK_NR;
        float *panel = packed + (vk_index)j0 * K;
        for (int32_t k = 0; k < K; k++) {
            const float *row = B + (vk_index)k * ldb + j0;
            float *dst = panel + (vk_index)k * VK_NR;
            if (nr == VK_NR) {
                vk_store(dst, vk_load(row));
                vk_store(dst + 4, vk_load(row + 4));
            } else {
                int32_t j = 0;
                for (; j < nr; j++) dst[j] = row[j];
                for (; j < VK_NR; j++) dst[j] = 0.0f;
            }
        }
    }
    return VK_OK;
}

/* One mr x VK_NR tile of C over kc steps of K. mr is a compile-time constant at every call site so
 * the accumulator arrays become registers. `first` = this is K block 0 (start from bias, not C);
 * `last` = apply the activation. Columns >= nr are computed on the zero padding and not stored. */
VK_INLINE void vk_tile(const int mr, int32_t nr, int32_t kc, const float *a, int32_t lda,
                       const float *bp, const float *bias8, float *c, int32_t ldc, int first,
                       int last, int32_t activation) {
    vk_f32x4 acc[VK_MR][2];
    const float *arow[VK_MR];
    float tail[VK_MR][VK_NR];
    for (int r = 0; r < mr; r++) arow[r] = a + (vk_index)r * lda;

    if (first) {
        vk_f32x4 b0 = bias8 ? vk_load(bias8) : vk_splat(0.0f);
        vk_f32x4 b1 = bias8 ? vk_load(bias8 + 4) : vk_splat(0.0f);
        for (int r = 0; r < mr; r++) {
            acc[r][0] = b0;
            acc[r][1] = b1;
        }
    } else if (nr == VK_NR) {
        for (int r = 0; r < mr; r++) {
            acc[r][0] = vk_load(c + (vk_index)r * ldc);
            acc[r][1] = vk_load(c + (vk_index)r * ldc + 4);
        }
    } else {
        for (int r = 0; r < mr; r++) {
            for (int32_t j = 0; j < VK_NR; j++) tail[r][j] = j < nr ? c[(vk_index)r * ldc + j] : 0.0f;
            acc[r][0] = vk_load(tail[r]);
            acc[r][1] = vk_load(tail[r] + 4);
        }
    }

    for (int32_t k = 0; k < kc; k++) {
        vk_f32x4 b0 = vk_load(bp);
        vk_f32x4 b1 = vk_load(bp + 4);
        bp += VK_NR;
        for (int r = 0; r < mr; r++) {
            vk_f32x4 av = vk_splat(arow[r][k]);
            acc[r][0] += av * b0;
            acc[r][1] += av * b1;
        }
    }

    if (last) {
        for (int r = 0; r < mr; r++) {
            acc[r][0] = vk_activate(acc[r][0], activation);
            acc[r][1] = vk_activate(acc[r][1], activation);
        }
    }
    if (nr == VK_NR) {
        for (int r = 0; r < mr; r++) {
            vk_store(c + (vk_index)r * ldc, acc[r][0]);
            vk_store(c + (vk_index)r * ldc + 4, acc[r][1]);
        }
    } else {
        for (int r = 0; r < mr; r++) {
            vk_store(tail[r], acc[r][0]);
            vk_store(tail[r] + 4, acc[r][1]);
            for (int32_t j = 0; j < nr; j++) c[(vk_index)r * ldc + j] = tail[r][j];
        }
    }
}

int32_t vk_sgemm_packed(int32_t M, int32_t N, int32_t K, const float *A, int32_t lda,
                        const float *packed_b, const float *bias, float *C, int32_t ldc,
                        int32_t activation) {
    if (M < 0 || N < 0 || K < 0) return VK_E_DIM;
    if (lda < K || ldc < N) return VK_E_LD;
    if (vk_bad_activation(activation)) return VK_E_ACTIVATION;
    if (M == 0 || N == 0) return VK_OK;
    if (C == 0 || (K > 0 && (A == 0 || packed_b == 0))) return VK_E_NULL;

    if (K == 0) { /* empty sum: C = act(bias) */
        for (int32_t i = 0; i < M; i++)
            for (int32_t j = 0; j < N; j++)
                C[(vk_index)i * ldc + j] = vk_activate_scalar(bias ? bias[j] : 0.0f, activation);
        return VK_OK;
    }

    float bias_tail[VK_NR];
    for (int32_t jc = 0; jc < N; jc += VK_NC) {
        int32_t nc = N - jc < VK_NC ? N - jc : VK_NC;
        for (int32_t pc = 0; pc < K; pc += VK_KC) {
            int32_t kc = K - pc < VK_KC ? K - pc : VK_KC;
            int first = pc == 0;
            int last = pc + kc == K;
            for (int32_t i = 0; i < M; i += VK_MR) {
                int32_t mr = M - i < VK_MR ? M - i : VK_MR;
                const float *a = A + (vk_index)i * lda + pc;
                for (int32_t j = jc; j < jc + nc; j += VK_NR) {
                    int32_t nr = N - j < VK_NR ? N - j : VK_NR;
                    const float *bp = packed_b + (vk_index)j * K + (vk_index)pc * VK_NR;
                    const float *bias8 = 0;
                    if (bias && first) {
                        if (nr == VK_NR) {
                            bias8 = bias + j;
                        } else {
                            for (int32_t t = 0; t < VK_NR; t++) bias_tail[t] = t < nr ? bias[j + t] : 0.0f;
                            bias8 = bias_tail;
                        }
                    }
                    float *c = C + (vk_index)i * ldc + j;
                    switch (mr) {
                    case 4: vk_tile(4, nr, kc, a, lda, bp, bias8, c, ldc, first, last, activation); break;
                    case 3: vk_tile(3, nr, kc, a, lda, bp, bias8, c, ldc, first, last, activation); break;
                    case 2: vk_tile(2, nr, kc, a, lda, bp, bias8, c, ldc, first, last, activation); break;
                    default: vk_tile(1, nr, kc, a, lda, bp, bias8, c, ldc, first, last, activation); break;
                    }
                }
            }
        }
    }
    return VK_OK;
}

int32_t vk_sgemm(int32_t M, int32_t N, int32_t K, const float *A, int32_t lda, const float *B,
                 int32_t ldb, const float *bias, float *C, int32_t ldc, int32_t activation,
                 float *workspace) {
    if (M < 0 || N < 0 || K < 0) return VK_E_DIM;
    if (lda < K || ldb < N || ldc < N) return VK_E_LD;
    if (K > 0 && N > 0 && workspace == 0) return VK_E_NULL;
    int32_t status = vk_pack_b(K, N, B, ldb, workspace);
    if (status != VK_OK) return status;
    return vk_sgemm_packed(M, N, K, A, lda, workspace, bias, C, ldc, activation);
}

/* Geometry of one vk_conv2d call, shared by its tiles. */
typedef struct {
    int32_t H, W, Cin, KH, KW, dil_h, dil_w, x_pixel_stride;
    const float *zeros;
} vk_conv_geometry;


/* One mr x VK_NR tile of a convolution over the rows [k0, k1) of K: like vk_tile, but the A row
 * of each output pixel is gathered tap by tap from the input (or from `zeros` in the padding).
 * first: start from the bias (or 0 with a scale) instead of the partial sums in y; last: apply
 * scale, bias and activation. */
VK_INLINE void vk_conv_tile(const int mr, int32_t nr, const vk_conv_geometry *g, const float *const *xn,
                            const int32_t *ih0, const int32_t *iw0, int32_t k0, int32_t k1, const float *bp,
                            const float *bias8, const float *scale8, float *y, int32_t ldy,
                            int32_t activation, const float *gathered) {
    vk_f32x4 acc[VK_MR][2];
    float tail[VK_MR][VK_NR];
    vk_f32x4 b0 = bias8 ? vk_load(bias8) : vk_splat(0.0f);
    vk_f32x4 b1 = bias8 ? vk_load(bias8 + 4) : vk_splat(0.0f);
    if (k0 == 0) {
        /* with a per-channel scale the bias is added after scaling (folded batch-norm), so the
         * sum starts at zero */
        for (int r = 0; r < mr; r++) {
            acc[r][0] = scale8 ? vk_splat(0.0f) : b0;
            acc[r][1] = scale8 ? vk_splat(0.0f) : b1;
        }
    } else if (nr == VK_NR) {
        for (int r = 0; r < mr; r++) {
            acc[r][0] = vk_load(y + (vk_index)r * ldy);
            acc[r][1] = vk_load(y + (vk_index)r * ldy + 4);
        }
    } else {
        for (int r = 0; r < mr; r++) {
            for (int32_t j = 0; j < VK_NR; j++) tail[r][j] = j < nr ? y[(vk_index)r * ldy + j] : 0.0f;
            acc[r][0] = vk_load(tail[r]);
            acc[r][1] = vk_load(tail[r] + 4);
        }
    }
    const int32_t cin = g->Cin;
    if (gathered) {
        /* rows r of K [k0, k1) already side by side at gathered + r * VK_CONV_KC */
        for (int32_t c = 0; c < k1 - k0; c++) {
            vk_f32x4 w0 = vk_load(bp);
            vk_f32x4 w1 = vk_load(bp + 4);
            bp += VK_NR;
            for (int r = 0; r < mr; r++) {
                vk_f32x4 av = vk_splat(gathered[r * VK_CONV_KC + c]);
                acc[r][0] += av * w0;
                acc[r][1] += av * w1;
            }
        }
    }
    int32_t tap = k0 / cin;
    int32_t c0 = k0 - tap * cin;
    for (int32_t k = gathered ? k1 : k0; k < k1; tap++, c0 = 0) {
        int32_t kh = tap / g->KW, kw = tap - kh * g->KW;
        int32_t c1 = cin < c0 + (k1 - k) ? cin : c0 + (k1 - k);
        const float *arow[VK_MR];
        for (int r = 0; r < mr; r++) {
            int32_t ih = ih0[r] + kh * g->dil_h;
            int32_t iw = iw0[r] + kw * g->dil_w;
            arow[r] = (ih >= 0 && ih < g->H && iw >= 0 && iw < g->W)
                          ? xn[r] + ((vk_index)ih * g->W + iw) * g->x_pixel_stride
                          : g->zeros;
        }
        for (int32_t c = c0; c < c1; c++) {
            vk_f32x4 w0 = vk_load(bp);
            vk_f32x4 w1 = vk_load(bp + 4);
            bp += VK_NR;
            for (int r = 0; r < mr; r++) {
                vk_f32x4 av = vk_splat(arow[r][c]);
                acc[r][0] += av * w0;
                acc[r][1] += av * w1;
            }
        }
        k += c1 - c0;
    }
    if (k1 == (vk_index)g->KH * g->KW * cin) {
        if (scale8) {
            vk_f32x4 s0 = vk_load(scale8), s1 = vk_load(scale8 + 4);
            for (int r = 0; r < mr; r++) {
                acc[r][0] = acc[r][0] * s0 + b0;
                acc[r][1] = acc[r][1] * s1 + b1;
            }
        }
        for (int r = 0; r < mr; r++) {
            acc[r][0] = vk_activate(acc[r][0], activation);
            acc[r][1] = vk_activate(acc[r][1], activation);
        }
    }
    if (nr == VK_NR) {
        for (int r = 0; r < mr; r++) {
            vk_store(y + (vk_index)r * ldy, acc[r][0]);
            vk_store(y + (vk_index)r * ldy + 4, acc[r][1]);
        }
    } else {
        for (int r = 0; r < mr; r++) {
            vk_store(tail[r], acc[r][0]);
            vk_store(tail[r] + 4, acc[r][1]);
            for (int32_t j = 0; j < nr; j++) y[(vk_index)r * ldy + j] = tail[r][j];
        }
    }
}

/* dst[c] = act(src[c] * scale[c] + shift[c]) for c in [c0, c1): the rounding of vk_scale_shift. */
VK_INLINE void vk_affine_row(const float *src, int32_t c0, int32_t c1, const float *scale, const float *shift,
                             float *dst, int32_t activation) {
    int32_t c = c0;
    for (; c + 4 <= c1; c += 4)
        vk_store(dst + c, vk_activate(vk_load(src + c) * vk_load(scale + c) + vk_load(shift + c), activation));
    for (; c < c1; c++) dst[c] = vk_activate_scalar(src[c] * scale[c] + shift[c], activation);
}

int32_t vk_conv2d(int32_t N, int32_t H, int32_t W, const float *x, int32_t x_pixel_stride,
                  int32_t Cin, int32_t KH, int32_t KW, int32_t stride_h, int32_t stride_w,
                  int32_t dil_h, int32_t dil_w, int32_t pad_top, int32_t pad_left, int32_t OH,
                  int32_t OW, const float *w, int32_t w_ld, int32_t Cout, const float *bias, float *y,
                  int32_t y_pixel_stride, int32_t activation, const float *zeros, const float *scale,
                  float *workspace, const float *in_scale, const float *in_shift, int32_t in_activation) {
    if (N < 0 || H < 0 || W < 0 || Cin < 1 || Cout < 0 || OH < 0 || OW < 0 || KH < 1 || KW < 1)
        return VK_E_DIM;
    if (stride_h < 1 || stride_w < 1 || dil_h < 1 || dil_w < 1) return VK_E_STRIDE;
    if (x_pixel_stride < Cin || y_pixel_stride < Cout) return VK_E_LD;
    if (w_ld != 0 && w_ld < Cout) return VK_E_LD;
    if (vk_bad_activation(activation) || vk_bad_activation(in_activation)) return VK_E_ACTIVATION;
    if ((in_scale == 0) != (in_shift == 0)) return VK_E_NULL;
    if (N == 0 || Cout == 0 || OH == 0 || OW == 0) return VK_OK;
    if (x == 0 || w == 0 || y == 0 || zeros == 0 || workspace == 0) return VK_E_NULL;
    if ((int64_t)KH * KW * Cin > 0x7fffffff) return VK_E_DIM;

    const vk_conv_geometry g = {H, W, Cin, KH, KW, dil_h, dil_w, x_pixel_stride, zeros};
    const int32_t K = KH * KW * Cin;
    const vk_index pixels = (vk_index)N * OH * OW;
    float bias_tail[VK_NR], scale_tail[VK_NR];
    for (int32_t jc = 0; jc < Cout; jc += VK_CONV_NC) {
        int32_t jend = Cout - jc < VK_CONV_NC ? Cout : jc + VK_CONV_NC;
        for (int32_t k0 = 0; k0 < K; k0 += VK_CONV_KC) {
            int32_t k1 = K - k0 < VK_CONV_KC ? K : k0 + VK_CONV_KC;
            /* row-major weights: pack this block into panels once (contiguous, zero-padded on the
             * Cout tail) for all the pixels that use it */
            const float *block = w_ld ? workspace : 0;
            if (w_ld) vk_pack_b(k1 - k0, jend - jc, w + (vk_index)k0 * w_ld + jc, w_ld, workspace);
            for (vk_index p0 = 0; p0 < pixels; p0 += VK_MR) {
                int32_t mr = pixels - p0 < VK_MR ? (int32_t)(pixels - p0) : VK_MR;
                const float *xn[VK_MR];
                int32_t ih0[VK_MR], iw0[VK_MR];
                for (int32_t r = 0; r < mr; r++) {
                    vk_index p = p0 + r;
                    int32_t ow = (int32_t)(p % OW);
                    int32_t oh = (int32_t)((p / OW) % OH);
                    vk_index n = p / ((vk_index)OW * OH);
                    xn[r] = x + n * H * (vk_index)W * x_pixel_stride;
                    ih0[r] = oh * stride_h - pad_top;
                    iw0[r] = ow * stride_w - pad_left;
                }
                const float *gathered = 0;
                if (Cin < VK_CONV_GATHER_CIN || in_scale) {
                    float *abuf = workspace + VK_CONV_KC * VK_CONV_NC;
                    for (int32_t r = 0; r < mr; r++) {
                        int32_t tap = k0 / Cin, c = k0 - tap * Cin;
                        for (int32_t k = k0; k < k1; tap++, c = 0) {
                            int32_t kh = tap / KW, kw = tap - kh * KW;
                            int32_t ih = ih0[r] + kh * dil_h, iw = iw0[r] + kw * dil_w;
                            int32_t end = Cin - c < k1 - k ? Cin : c + (k1 - k);
                            float *dst = abuf + r * VK_CONV_KC + (k - k0) - c;
                            if (!(ih >= 0 && ih < H && iw >= 0 && iw < W)) {
                                for (int32_t t = c; t < end; t++) dst[t] = 0.0f; /* padding: after the prologue */
                            } else if (in_scale) {
                                vk_affine_row(xn[r] + ((vk_index)ih * W + iw) * x_pixel_stride, c, end, in_scale,
                                              in_shift, dst, in_activation);
                            } else {
                                const float *src = xn[r] + ((vk_index)ih * W + iw) * x_pixel_stride;
                                for (int32_t t = c; t < end; t++) dst[t] = src[t];
                            }
                            k += end - c;
                        }
                    }
                    gathered = abuf;
                }
                float *yrow = y + p0 * y_pixel_stride;
                for (int32_t j = jc; j < jend; j += VK_NR) {
                    int32_t nr = Cout - j < VK_NR ? Cout - j : VK_NR;
                    /* panel j from row k0: packed by the caller = K x VK_NR contiguous; else this
                     * block's panel in the workspace, (k1 - k0) x VK_NR */
                    const float *bp = block ? block + (vk_index)(j - jc) * (k1 - k0)
                                            : w + (vk_index)j * K + (vk_index)k0 * VK_NR;
                    const float *bias8 = 0;
                    if (bias) {
                        if (nr == VK_NR) {
                            bias8 = bias + j;
                        } else {
                            for (int32_t t = 0; t < VK_NR; t++) bias_tail[t] = t < nr ? bias[j + t] : 0.0f;
                            bias8 = bias_tail;
                        }
                    }
                    const float *scale8 = 0;
                    if (scale) {
                        if (nr == VK_NR) {
                            scale8 = scale + j;
                        } else {
                            for (int32_t t = 0; t < VK_NR; t++) scale_tail[t] = t < nr ? scale[j + t] : 0.0f;
                            scale8 = scale_tail;
                        }
                    }
                    switch (mr) {
                    case 4: vk_conv_tile(4, nr, &g, xn, ih0, iw0, k0, k1, bp, bias8, scale8, yrow + j, y_pixel_stride, activation, gathered); break;
                    case 3: vk_conv_tile(3, nr, &g, xn, ih0, iw0, k0, k1, bp, bias8, scale8, yrow + j, y_pixel_stride, activation, gathered); break;
                    case 2: vk_conv_tile(2, nr, &g, xn, ih0, iw0, k0, k1, bp, bias8, scale8, yrow + j, y_pixel_stride, activation, gathered); break;
                    default: vk_conv_tile(1, nr, &g, xn, ih0, iw0, k0, k1, bp, bias8, scale8, yrow + j, y_pixel_stride, activation, gathered); break;
                    }
                }
            }
        }
    }
    return VK_OK;
}

/* Depthwise conv: channels are the SIMD axis (NHWC keeps them contiguous). Taps that fall in the
 * zero padding are skipped rather than read from a padded copy, so no scratch memory is needed. */
int32_t vk_depthwise_conv2d(int32_t N, int32_t H, int32_t W, int32_t C, const float *x,
                            int32_t KH, int32_t KW, const float *weights, const float *bias,
                            int32_t stride_h, int32_t stride_w, int32_t dil_h, int32_t dil_w,
                            int32_t pad_top, int32_t pad_left, int32_t OH, int32_t OW, float *y,
                            int32_t activation) {
    if (N < 0 || H < 0 || W < 0 || C < 0 || OH < 0 || OW < 0 || KH < 1 || KW < 1) return VK_E_DIM;
    if (stride_h < 1 || stride_w < 1 || dil_h < 1 || dil_w < 1) return VK_E_STRIDE;
    if (vk_bad_activation(activation)) return VK_E_ACTIVATION;
    if (N == 0 || C == 0 || OH == 0 || OW == 0) return VK_OK;
    if (x == 0 || weights == 0 || y == 0) return VK_E_NULL;

    const vk_index row = (vk_index)W * C;
    for (int32_t n = 0; n < N; n++) {
        const float *xn = x + (vk_index)n * H * row;
        float *yn = y + (vk_index)n * OH * OW * C;
        for (int32_t oh = 0; oh < OH; oh++) {
            for (int32_t ow = 0; ow < OW; ow++) {
                float *out = yn + ((vk_index)oh * OW + ow) * C;
                int32_t ih0 = oh * stride_h - pad_top;
                int32_t iw0 = ow * stride_w - pad_left;
                int32_t c = 0;
                for (; c + 8 <= C; c += 8) {
                    vk_f32x4 acc0 = bias ? vk_load(bias + c) : vk_splat(0.0f);
                    vk_f32x4 acc1 = bias ? vk_load(bias + c + 4) : vk_splat(0.0f);
                    for (int32_t kh = 0; kh < KH; kh++) {
                        int32_t ih = ih0 + kh * dil_h;
                        if (ih < 0 || ih >= H) continue;
                        for (int32_t kw = 0; kw < KW; kw++) {
                            int32_t iw = iw0 + kw * dil_w;
                            if (iw < 0 || iw >= W) continue;
                            const float *xp = xn + ih * row + (vk_index)iw * C + c;
                            const float *wp = weights + ((vk_index)kh * KW + kw) * C + c;
                            acc0 += vk_load(xp) * vk_load(wp);
                            acc1 += vk_load(xp + 4) * vk_load(wp + 4);
                        }
                    }
                    vk_store(out + c, vk_activate(acc0, activation));
                    vk_store(out + c + 4, vk_activate(acc1, activation));
                }
                for (; c + 4 <= C; c += 4) {
                    vk_f32x4 acc = bias ? vk_load(bias + c) : vk_splat(0.0f);
                    for (int32_t kh = 0; kh < KH; kh++) {
                        int32_t ih = ih0 + kh * dil_h;
                        if (ih < 0 || ih >= H) continue;
                        for (int32_t kw = 0; kw < KW; kw++) {
                            int32_t iw = iw0 + kw * dil_w;
                            if (iw < 0 || iw >= W) continue;
                            acc += vk_load(xn + ih * row + (vk_index)iw * C + c) *
                                   vk_load(weights + ((vk_index)kh * KW + kw) * C + c);
                        }
                    }
                    vk_store(out + c, vk_activate(acc, activation));
                }
                for (; c < C; c++) {
                    float acc = bias ? bias[c] : 0.0f;
                    for (int32_t kh = 0; kh < KH; kh++) {
                        int32_t ih = ih0 + kh * dil_h;
                        if (ih < 0 || ih >= H) continue;
                        for (int32_t kw = 0; kw < KW; kw++) {
                            int32_t iw = iw0 + kw * dil_w;
                            if (iw < 0 || iw >= W) continue;
                            acc += xn[ih * row + (vk_index)iw * C + c] *
                                   weights[((vk_index)kh * KW + kw) * C + c];
                        }
                    }
                    out[c] = vk_activate_scalar(acc, activation);
                }
            }
        }
    }
    return VK_OK;
}

int32_t vk_scale_shift(int32_t rows, int32_t C, const float *x, int32_t x_row_stride, const float *scale,
                       const float *shift, float *y, int32_t activation) {
    if (rows < 0 || C < 0) return VK_E_DIM;
    if (x_row_stride < C) return VK_E_LD;
    if (vk_bad_activation(activation)) return VK_E_ACTIVATION;
    if (rows == 0 || C == 0) return VK_OK;
    if (x == 0 || scale == 0 || shift == 0 || y == 0) return VK_E_NULL;
    for (vk_index r = 0; r < rows; r++) {
        const float *xr = x + r * x_row_stride;
        float *yr = y + r * C;
        int32_t c = 0;
        for (; c + 8 <= C; c += 8) {
            vk_f32x4 a0 = vk_load(xr + c) * vk_load(scale + c) + vk_load(shift + c);
            vk_f32x4 a1 = vk_load(xr + c + 4) * vk_load(scale + c + 4) + vk_load(shift + c + 4);
            vk_store(yr + c, vk_activate(a0, activation));
            vk_store(yr + c + 4, vk_activate(a1, activation));
        }
        for (; c + 4 <= C; c += 4)
            vk_store(yr + c, vk_activate(vk_load(xr + c) * vk_load(scale + c) + vk_load(shift + c), activation));
        for (; c < C; c++) yr[c] = vk_activate_scalar(xr[c] * scale[c] + shift[c], activation);
    }
    return VK_OK;
}

/* ---- Winograd F(2x2, 3x3) convolution ---------------------------------------------------------
 * y = A^T [ (G g G^T) . (B^T d B) ] A per 2x2 output tile, d the tile's 4x4 input patch, g a 3x3
 * filter (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016):
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
 *   A^T = [1 1 1 0; 0 1 -1 -1].
 * 16 multiplies per tile and channel pair instead of 36: the 16 transformed patches of a block of
 * VK_WINO_TB tiles become 16 GEMMs [tiles x Cin] x [Cin x Cout] on the same micro-kernel. The
 * filters are transformed once (vk_winograd3x3_filters) and kept by the caller: transforming them
 * on every call cost as much as the whole convolution at 7x7 and 14x14. */
#ifndef VK_WINO_TB
#define VK_WINO_TB 16
#endif

VK_INLINE int32_t vk_round8(int32_t n) { return (n + VK_NR - 1) / VK_NR * VK_NR; }

int32_t vk_winograd3x3_filter_floats(int32_t Cin, int32_t Cout) {
    if (Cin < 1 || Cout < 1 || (int64_t)16 * Cin * vk_round8(Cout) > 0x7fffffff) return VK_E_DIM;
    return 16 * Cin * vk_round8(Cout);
}

int32_t vk_winograd3x3_workspace_floats(int32_t Cin, int32_t Cout) {
    if (Cin < 1 || Cout < 1 || (int64_t)16 * (VK_WINO_TB * ((int64_t)Cin + vk_round8(Cout)) + 32) > 0x7fffffff)
        return VK_E_DIM;
    return 16 * (VK_WINO_TB * (Cin + vk_round8(Cout)) + 32);
}

int32_t vk_winograd3x3_filters(int32_t Cin, int32_t Cout, const float *w, int32_t w_ld, float *u) {
    if (Cin < 1 || Cout < 1) return VK_E_DIM;
    if (w_ld < Cout) return VK_E_LD;
    if (vk_winograd3x3_filter_floats(Cin, Cout) < 0) return VK_E_DIM;
    if (w == 0 || u == 0) return VK_E_NULL;
    const int32_t cout8 = vk_round8(Cout);
    const vk_index plane = (vk_index)Cin * cout8;
    const vk_f32x4 half = vk_splat(0.5f);
    for (int32_t c = 0; c < Cin; c++) {
        for (int32_t o = 0; o < cout8; o += 4) {
            vk_f32x4 g[3][3];
            for (int kh = 0; kh < 3; kh++)
                for (int kw = 0; kw < 3; kw++) {
                    const float *src = w + ((vk_index)(kh * 3 + kw) * Cin + c) * w_ld + o;
                    if (o + 4 <= Cout) {
                        g[kh][kw] = vk_load(src);
                    } else {
                        float lanes[4];
                        for (int t = 0; t < 4; t++) lanes[t] = o + t < Cout ? src[t] : 0.0f;
                        g[kh][kw] = vk_load(lanes);
                    }
                }
            vk_f32x4 t[4][3]; /* G g */
            for (int kw = 0; kw < 3; kw++) {
                t[0][kw] = g[0][kw];
                t[1][kw] = (g[0][kw] + g[1][kw] + g[2][kw]) * half;
                t[2][kw] = (g[0][kw] - g[1][kw] + g[2][kw]) * half;
                t[3][kw] = g[2][kw];
            }
            float *dst = u + (vk_index)(o / VK_NR) * Cin * VK_NR + (vk_index)c * VK_NR + o % VK_NR;
            for (int i = 0; i < 4; i++) { /* (G g) G^T */
                vk_f32x4 r[4] = {t[i][0], (t[i][0] + t[i][1] + t[i][2]) * half, (t[i][0] - t[i][1] + t[i][2]) * half, t[i][2]};
                for (int j = 0; j < 4; j++) vk_store(dst + (vk_index)(i * 4 + j) * plane, r[j]);
            }
        }
    }
    return VK_OK;
}

/* B^T d B on 4 channels: d[i][j] is the patch, v[4 i + j] receives the transform. */
VK_INLINE void vk_winograd_input4(vk_f32x4 d[4][4], vk_f32x4 *v) {
    vk_f32x4 t[4][4];
    for (int j = 0; j < 4; j++) {
        t[0][j] = d[0][j] - d[2][j];
        t[1][j] = d[1][j] + d[2][j];
        t[2][j] = d[2][j] - d[1][j];
        t[3][j] = d[1][j] - d[3][j];
    }
    for (int i = 0; i < 4; i++) {
        v[4 * i + 0] = t[i][0] - t[i][2];
        v[4 * i + 1] = t[i][1] + t[i][2];
        v[4 * i + 2] = t[i][2] - t[i][1];
        v[4 * i + 3] = t[i][1] - t[i][3];
    }
}

int32_t vk_conv2d_winograd3x3(int32_t N, int32_t H, int32_t W, const float *x, int32_t x_pixel_stride,
                              int32_t Cin, int32_t pad_top, int32_t pad_left, int32_t OH, int32_t OW,
                              const float *u, int32_t Cout, const float *bias, float *y,
                              int32_t y_pixel_stride, int32_t activation, const float *scale, float *workspace) {
    if (N < 0 || H < 0 || W < 0 || Cin < 1 || Cout < 1 || OH < 0 || OW < 0 || pad_top < 0 || pad_left < 0)
        return VK_E_DIM;
    if (x_pixel_stride < Cin || y_pixel_stride < Cout) return VK_E_LD;
    if (vk_bad_activation(activation)) return VK_E_ACTIVATION;
    if (vk_winograd3x3_workspace_floats(Cin, Cout) < 0 || vk_winograd3x3_filter_floats(Cin, Cout) < 0) return VK_E_DIM;
    if (N == 0 || OH == 0 || OW == 0) return VK_OK;
    if (x == 0 || u == 0 || y == 0 || workspace == 0) return VK_E_NULL;

    const int32_t cout8 = vk_round8(Cout);
    float *v = workspace; /* 16 planes [VK_WINO_TB][Cin] */

    const int32_t tiles_h = (OH + 1) / 2, tiles_w = (OW + 1) / 2;
    const vk_index tiles = (vk_index)N * tiles_h * tiles_w;
    /* one cache line between planes: at a power-of-two plane size the 16 streams of a transform
     * would all fall into one L1 set */
    const vk_index v_plane = (vk_index)VK_WINO_TB * Cin + 16, m_plane = (vk_index)VK_WINO_TB * cout8 + 16;
    float *m = v + 16 * v_plane; /* 16 planes [VK_WINO_TB][cout8] */
    const vk_f32x4 zero = vk_splat(0.0f);
    for (vk_index t0 = 0; t0 < tiles; t0 += VK_WINO_TB) {
        int32_t tb = tiles - t0 < VK_WINO_TB ? (int32_t)(tiles - t0) : VK_WINO_TB;
        /* input transform of each tile's 4x4 patch, 4 channels at a time */
        for (int32_t t = 0; t < tb; t++) {
            vk_index tile = t0 + t;
            int32_t tx = (int32_t)(tile % tiles_w), ty = (int32_t)((tile / tiles_w) % tiles_h);
            const float *xn = x + (tile / ((vk_index)tiles_w * tiles_h)) * H * (vk_index)W * x_pixel_stride;
            int32_t ih0 = 2 * ty - pad_top, iw0 = 2 * tx - pad_left;
            const float *rows[4][4];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) {
                    int32_t ih = ih0 + i, iw = iw0 + j;
                    rows[i][j] = (ih >= 0 && ih < H && iw >= 0 && iw < W) ? xn + ((vk_index)ih * W + iw) * x_pixel_stride : 0;
                }
            float *vt = v + (vk_index)t * Cin;
            int32_t c = 0;
            for (; c + 4 <= Cin; c += 4) {
                vk_f32x4 d[4][4], out[16];
                for (int i = 0; i < 4; i++)
                    for (int j = 0; j < 4; j++) d[i][j] = rows[i][j] ? vk_load(rows[i][j] + c) : zero;
                vk_winograd_input4(d, out);
                for (int xi = 0; xi < 16; xi++) vk_store(vt + xi * v_plane + c, out[xi]);
            }
            for (; c < Cin; c++) {
                vk_f32x4 d[4][4], out[16];
                for (int i = 0; i < 4; i++)
                    for (int j = 0; j < 4; j++) d[i][j] = vk_splat(rows[i][j] ? rows[i][j][c] : 0.0f);
                vk_winograd_input4(d, out);
                for (int xi = 0; xi < 16; xi++) vt[xi * v_plane + c] = out[xi][0];
            }
        }
        /* 16 GEMMs: m[xi] = v[xi] @ u[xi] */
        for (int xi = 0; xi < 16; xi++)
            vk_sgemm_packed(tb, cout8, Cin, v + xi * v_plane, Cin, u + (vk_index)xi * Cin * cout8, 0,
                            m + xi * m_plane, cout8, VK_ACT_LINEAR);
        /* output transform A^T m A, then scale / bias / activation, 4 output channels at a time */
        for (int32_t t = 0; t < tb; t++) {
            vk_index tile = t0 + t;
            int32_t tx = (int32_t)(tile % tiles_w), ty = (int32_t)((tile / tiles_w) % tiles_h);
            float *yn = y + (tile / ((vk_index)tiles_w * tiles_h)) * OH * (vk_index)OW * y_pixel_stride;
            const float *mt = m + (vk_index)t * cout8;
            for (int32_t o = 0; o < Cout; o += 4) {
                vk_f32x4 q[16];
                for (int xi = 0; xi < 16; xi++) q[xi] = vk_load(mt + xi * m_plane + o);
                vk_f32x4 r0[4], r1[4];
                for (int j = 0; j < 4; j++) {
                    r0[j] = q[j] + q[4 + j] + q[8 + j];
                    r1[j] = q[4 + j] - q[8 + j] - q[12 + j];
                }
                vk_f32x4 out[2][2] = {{r0[0] + r0[1] + r0[2], r0[1] - r0[2] - r0[3]},
                                      {r1[0] + r1[1] + r1[2], r1[1] - r1[2] - r1[3]}};
                float lanes_s[4] = {1, 1, 1, 1}, lanes_b[4] = {0, 0, 0, 0};
                int32_t valid = Cout - o < 4 ? Cout - o : 4;
                for (int l = 0; l < valid; l++) {
                    if (scale) lanes_s[l] = scale[o + l];
                    if (bias) lanes_b[l] = bias[o + l];
                }
                vk_f32x4 s4 = vk_load(lanes_s), b4 = vk_load(lanes_b);
                for (int i = 0; i < 2; i++) {
                    int32_t oh = 2 * ty + i;
                    if (oh >= OH) break;
                    for (int j = 0; j < 2; j++) {
                        int32_t ow = 2 * tx + j;
                        if (ow >= OW) break;
                        vk_f32x4 val = out[i][j];
                        if (scale) val = val * s4;
                        if (bias) val = val + b4;
                        val = vk_activate(val, activation);
                        float *dst = yn + ((vk_index)oh * OW + ow) * y_pixel_stride + o;
                        if (valid == 4) {
                            vk_store(dst, val);
                        } else {
                            for (int l = 0; l < valid; l++) dst[l] = val[l];
                        }
                    }
                }
            }
        }
    }
    return VK_OK;
}

/* ---- pooling ----------------------------------------------------------------------------------
 * Channels are the SIMD axis. Max: cells in the padding never win and NaN propagates (like
 * numpy.maximum). Average: the taps are summed in row-major order starting from 0, then scaled by
 * 1 / (PH * PW) (VK_POOL_AVG_INCLUDE_PAD) or divided by the number of cells inside the input
 * (VK_POOL_AVG), which is what app.kernels.pool does, so both round identically. */
VK_INLINE vk_f32x4 vk_max_nan(vk_f32x4 m, vk_f32x4 a) {
    vk_i32x4 keep = (m >= a) | (m != m);
    return (vk_f32x4)(((vk_i32x4)m & keep) | ((vk_i32x4)a & ~keep));
}

int32_t vk_pool2d(int32_t N, int32_t H, int32_t W, int32_t C, const float *x, int32_t PH, int32_t PW,
                  int32_t stride_h, int32_t stride_w, int32_t pad_top, int32_t pad_left, int32_t OH, int32_t OW,
                  float *y, int32_t mode) {
    if (N < 0 || H < 0 || W < 0 || C < 0 || OH < 0 || OW < 0 || PH < 1 || PW < 1 || pad_top < 0 || pad_left < 0)
        return VK_E_DIM;
    if (stride_h < 1 || stride_w < 1) return VK_E_STRIDE;
    if (mode < VK_POOL_MAX || mode > VK_POOL_AVG_INCLUDE_PAD) return VK_E_ACTIVATION;
    if (N == 0 || C == 0 || OH == 0 || OW == 0) return VK_OK;
    if (x == 0 || y == 0) return VK_E_NULL;
    const vk_index row = (vk_index)W * C;
    const float inv_area = 1.0f / (float)(PH * PW);
    for (int32_t n = 0; n < N; n++) {
        const float *xn = x + (vk_index)n * H * row;
        float *yn = y + (vk_index)n * OH * OW * C;
        for (int32_t oh = 0; oh < OH; oh++) {
            int32_t ih0 = oh * stride_h - pad_top;
            int32_t i0 = ih0 < 0 ? -ih0 : 0, i1 = H - ih0 < PH ? H - ih0 : PH;
            for (int32_t ow = 0; ow < OW; ow++) {
                int32_t iw0 = ow * stride_w - pad_left;
                int32_t j0 = iw0 < 0 ? -iw0 : 0, j1 = W - iw0 < PW ? W - iw0 : PW;
                float *out = yn + ((vk_index)oh * OW + ow) * C;
                /* an output whose window lies wholly in the padding: -inf for max (no cell wins),
                 * 0 / 0 for the average, as the numpy kernel gives */
                const float empty = mode == VK_POOL_MAX ? -__builtin_inff() : 0.0f;
                const int32_t cells = (i1 > i0 && j1 > j0) ? (i1 - i0) * (j1 - j0) : 0;
                const float factor = mode == VK_POOL_AVG_INCLUDE_PAD ? inv_area : 0.0f;
                int32_t c = 0;
                for (; c + 4 <= C; c += 4) {
                    vk_f32x4 acc = vk_splat(empty);
                    int first = 1;
                    for (int32_t i = i0; i < i1; i++)
                        for (int32_t j = j0; j < j1; j++) {
                            vk_f32x4 v = vk_load(xn + (vk_index)(ih0 + i) * row + (vk_index)(iw0 + j) * C + c);
                            if (mode == VK_POOL_MAX) acc = first ? v : vk_max_nan(acc, v);
                            else acc += v;
                            first = 0;
                        }
                    if (mode != VK_POOL_MAX) acc = factor != 0.0f ? acc * vk_splat(factor) : acc / vk_splat((float)cells);
                    vk_store(out + c, acc);
                }
                for (; c < C; c++) {
                    vk_f32x4 acc = vk_splat(empty);
                    int first = 1;
                    for (int32_t i = i0; i < i1; i++)
                        for (int32_t j = j0; j < j1; j++) {
                            vk_f32x4 v = vk_splat(xn[(vk_index)(ih0 + i) * row + (vk_index)(iw0 + j) * C + c]);
                            if (mode == VK_POOL_MAX) acc = first ? v : vk_max_nan(acc, v);
                            else acc += v;
                            first = 0;
                        }
                    if (mode != VK_POOL_MAX) acc = factor != 0.0f ? acc * vk_splat(factor) : acc / vk_splat((float)cells);
                    out[c] = acc[0];
                }
            }
        }
    }
    return VK_OK;
}
