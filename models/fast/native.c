/* Native CPU kernels of the encoder's training pass (models/fast/native.py compiles this file with the
   system C compiler on first use and calls it through ctypes; without a compiler the torch path runs).

   - attn_fwd / attn_bwd: the attention of one layer, softmax(q.k + additive mask), dropout, times v,
     for every (sequence, head), with the (L, L) tiles kept in cache; the context is written in its
     (B, L, H*dh) layout and the gradient in the (B, L, 3*H*dh) layout of the q/k/v projection, so
     no head-major copies are made;
   - drop_mul / drop_add: x * keep and x + y * keep for p = 0.5 dropout, reading the random bits
     themselves instead of a float tensor of factors (the same values as the torch expressions);
   - linear_wgrad: a linear layer's weight and bias gradients over tens of thousands of tokens (the
     reduction the BLAS runs slowest here: MKL takes its AVX2 path on AMD CPUs);
   - ln_bwd: LayerNorm's backward, its affine gradients summed over blocks of rows (accurate at one
     thread, where ATen sums them in one pass).

   Dropout bits: element e of a tensor is kept (factor 2) when bit (e & 7) of byte e >> 3 is set;
   the bytes are those of the int64 words that models/dropout.py draws from a torch.Generator. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* GCC/Clang vector extensions, one register wide: 16 floats with AVX-512, else 8 (AVX2). A 16-float
   type on AVX2 is two registers that GCC keeps in memory when they are arrays (the GEMM's register
   tiles), every FMA a load and a store: the kernels ran slower than torch's there. A GEMM tile has
   TILE_ACC accumulators, 24 of the 32 AVX-512 registers or 8 of the 16 AVX2 ones (each element of a
   product is summed over k in the same order whatever the tile's shape) */
#ifdef __AVX512F__
#define W 16
#define TILE_ACC 24
#else
#define W 8
#define TILE_ACC 8
#endif
typedef float vf __attribute__((vector_size(4 * W)));
typedef int32_t vi __attribute__((vector_size(4 * W)));
#define PADW(n) (((n) + 4 * W - 1) / (4 * W) * (4 * W)) /* rows padded to 4 registers */

static inline vf load(const float* p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void store(float* p, vf v) { memcpy(p, &v, sizeof v); }
static inline vf splat(float x) { return (vf){0} + x; }
#if W == 16
static const vi lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
#else
static const vi lane = {0, 1, 2, 3, 4, 5, 6, 7};
#endif

/* out[d*Lp + j] = m[j*ms + d] for j < n, d < dh (rows of one head's keys or values, transposed) */
static void transpose_rows(const float* m, int64_t ms, int64_t n, int64_t dh, int64_t Lp, float* out) {
  for (int64_t d = 0; d < dh; d++) /* strided reads, contiguous writes (scattered writes are slower) */
    for (int64_t j = 0; j < n; j++) out[d * Lp + j] = m[j * ms + d];
}

static inline vf vsel(vi m, vf a, vf b) { return (vf)(((vi)a & m) | ((vi)b & ~m)); }

/* exp(x) for x <= 0 (softmax after subtracting the row maximum): Cephes' expf polynomial, about
   1 ulp; below -87 it returns 0, not a subnormal (which would slow all later arithmetic) */
static inline vf exp_nonpos(vf x0) {
  const vi tiny = x0 < splat(-87.0f);
  const vf x = vsel(tiny, splat(-87.0f), x0);
  const vf n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
  const vf r = x - n * 0.693359375f + n * 2.12194440e-4f;
  vf p = splat(1.9875691500E-4f);
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  p = p * r * r + r + 1.0f;
  const vi e = (__builtin_convertvector(n, vi) + 127) << 23;
  return vsel(tiny, splat(0.0f), p * (vf)e);
}

/* bits e .. e+15 of a bit string of nbytes bytes, in the low bits, near its end (0 past it); out of
   line, so that the common case below keeps its word in a register */
static __attribute__((noinline)) uint32_t bits_tail(const uint8_t* bits, int64_t nbytes, int64_t e) {
  uint32_t w = 0;
  const int64_t i = e >> 3;
  if (nbytes > i) memcpy(&w, bits + i, (size_t)(nbytes - i < 4 ? nbytes - i : 4));
  return w >> (e & 7);
}

/* bits e .. e+15 of a bit string of nbytes bytes, in the low bits (4 bytes hold any 16 bits) */
static inline uint32_t bits_at(const uint8_t* bits, int64_t nbytes, int64_t e) {
  const int64_t i = e >> 3;
  if (__builtin_expect(i + 4 > nbytes, 0)) return bits_tail(bits, nbytes, e);
  uint32_t w;
  memcpy(&w, bits + i, 4);
  return w >> (e & 7);
}

/* keep[j] = dropout factor of elements k0 .. k0+n-1 of a bit string (2 where the bit is set, else 0;
   1 everywhere without bits); keep has room for PADW(n) */
static void keep_factors(const uint8_t* bits, int64_t nbytes, int64_t k0, int64_t n, float* keep) {
  for (int64_t j = 0; j < n; j += W) {
    if (!bits) { store(keep + j, splat(1.0f)); continue; }
    const vi b = (((vi){0} + (int32_t)bits_at(bits, nbytes, k0 + j)) >> lane) & 1;
    store(keep + j, __builtin_convertvector(b, vf) * 2.0f);
  }
}

/* Small GEMMs for tall, skinny operands: C (M, N) = (or +=) A (M, K) B (K, N), B and C row-major
   with N a multiple of W, A(r, k) at A[r * sr + k * sk] (so A may be a transposed view). Tiles of
   rows x cols registers (24 accumulators keep the FMA units busy) are summed over k in registers
   and written or added to C once. */
static inline __attribute__((always_inline)) void mm_tile(const float* A, int64_t sr, int64_t sk,
    const float* B, int64_t ldb, float* C, int64_t ldc, int64_t K, int add, const int rows, const int cols) {
  vf a[24][4];
  for (int r = 0; r < rows; r++)
    for (int j = 0; j < cols; j++) a[r][j] = splat(0.0f);
  for (int64_t k = 0; k < K; k++) {
    vf b[4];
    for (int j = 0; j < cols; j++) b[j] = load(B + k * ldb + j * W);
    const float* ak = A + k * sk;
    for (int r = 0; r < rows; r++) {
      const vf x = splat(ak[r * sr]);
      for (int j = 0; j < cols; j++) a[r][j] += x * b[j];
    }
  }
  for (int r = 0; r < rows; r++)
    for (int j = 0; j < cols; j++) {
      float* p = C + r * ldc + j * W;
      store(p, add ? load(p) + a[r][j] : a[r][j]);
    }
}

/* the tiles of one block of columns (cols registers wide): full tiles of 24 / cols rows, then the
   rows left in tiles of 16, 8, 4, 2, 1 (each call has constant sizes, so the compiler unrolls it) */
#define MM_COLUMN_BLOCK(cols)                                                                      \
  do {                                                                                             \
    const int full = TILE_ACC / (cols);                                                                \
    int64_t r = 0;                                                                                 \
    for (; r + full <= M; r += full) mm_tile(A + r * sr, sr, sk, Bj, ldb, Cj + r * ldc, ldc, K, add, full, cols); \
    for (int part = 16; part >= 1; part /= 2)                                                      \
      if ((M - r) & part) {                                                                        \
        switch (part) {                                                                            \
          case 16: mm_tile(A + r * sr, sr, sk, Bj, ldb, Cj + r * ldc, ldc, K, add, 16, cols); break; \
          case 8: mm_tile(A + r * sr, sr, sk, Bj, ldb, Cj + r * ldc, ldc, K, add, 8, cols); break; \
          case 4: mm_tile(A + r * sr, sr, sk, Bj, ldb, Cj + r * ldc, ldc, K, add, 4, cols); break; \
          case 2: mm_tile(A + r * sr, sr, sk, Bj, ldb, Cj + r * ldc, ldc, K, add, 2, cols); break; \
          default: mm_tile(A + r * sr, sr, sk, Bj, ldb, Cj + r * ldc, ldc, K, add, 1, cols); break; \
        }                                                                                          \
        r += part;                                                                                 \
      }                                                                                            \
  } while (0)

/* all of C, a block of 4 (at the end 2 or 1) registers of columns at a time: a block of B stays in cache */
static void mm(const float* A, int64_t sr, int64_t sk, int64_t M, int64_t K, const float* B, int64_t ldb,
               int64_t N, float* C, int64_t ldc, int add) {
  for (int64_t j = 0; j < N;) {
    const float* Bj = B + j;
    float* Cj = C + j;
    if (j + 4 * W <= N) { MM_COLUMN_BLOCK(4); j += 4 * W; }
    else if (j + 2 * W <= N) { MM_COLUMN_BLOCK(2); j += 2 * W; }
    else { MM_COLUMN_BLOCK(1); j += W; }
  }
}

/* horizontal sum and maximum of a vector, as a tree of halves (a short dependency chain); with W = 16
   the sum is (lo + hi) of 8, then of 4, then (s[0] + s[2]) + (s[1] + s[3]) */
static inline float hsum(vf v) {
  float m[W];
  memcpy(m, &v, sizeof m);
  for (int w = W / 2; w >= 1; w /= 2)
    for (int l = 0; l < w; l++) m[l] = m[l] + m[l + w];
  return m[0];
}
static inline float fmaxf2(float a, float b) { return a > b ? a : b; }
static inline float hmax(vf v) {
  float m[W];
  memcpy(m, &v, sizeof m);
  for (int w = W / 2; w >= 1; w /= 2)
    for (int l = 0; l < w; l++) m[l] = fmaxf2(m[l], m[l + w]);
  return m[0];
}

/* s[j] = exp(s[j] - max(s)) / sum for j < Lp (lanes past the row hold -1e30 and end as 0) */
static void softmax_row(float* s, int64_t Lp) {
  vf m = load(s);
  for (int64_t jc = W; jc < Lp; jc += W) { const vf v = load(s + jc); m = vsel(v > m, v, m); }
  const float mx = hmax(m);
  vf acc = {0};
  for (int64_t jc = 0; jc < Lp; jc += W) { const vf e = exp_nonpos(load(s + jc) - mx); store(s + jc, e); acc += e; }
  const float inv = 1.0f / hsum(acc);
  for (int64_t jc = 0; jc < Lp; jc += W) store(s + jc, load(s + jc) * inv);
}

/* softmax(q.k + mask) . dropout . v for every (row, head). qkv (B, L, 3*H*dh) rows [q_0..q_H-1,
   k_0.., v_0..]; valid (B, L) 1 where the key is a real item (the mask is additive -10000 at padding
   and future keys); bits: H blocks of nbytes (head h, element (b, i, j) is bit b*L*L + i*L + j) or
   NULL; ctx (B, L, H*dh); probs (B, H, L, L): the softmax before dropout, for the backward.
   Per (row, head) the scores and the context are small GEMMs (`mm`) over the (L, Lp) tile. */
void attn_fwd(const float* qkv, const uint8_t* valid, const uint8_t* bits, int64_t nbytes,
              float* ctx, float* probs, int64_t B, int64_t L, int64_t H, int64_t dh) {
  const int64_t Lp = PADW(L), stride = 3 * H * dh, D = H * dh;
  float* kt = calloc((size_t)(dh * Lp + L * Lp + 2 * Lp), sizeof(float)); /* kt's padding columns stay 0 */
  float *S = kt + dh * Lp, *keep = S + L * Lp, *addm = keep + Lp;
  for (int64_t b = 0; b < B; b++) {
    const float* base = qkv + b * L * stride;
    for (int64_t j = 0; j < Lp; j++) addm[j] = j >= L ? -1e30f : valid[b * L + j] ? 0.0f : -10000.0f;
    for (int64_t h = 0; h < H; h++) {
      const uint8_t* hb = bits ? bits + h * nbytes : NULL;
      transpose_rows(base + (H + h) * dh, stride, L, dh, Lp, kt);
      mm(base + h * dh, stride, 1, L, dh, kt, Lp, Lp, S, Lp, 0); /* scores (L, Lp) */
      float* P = probs + (b * H + h) * L * L;
      for (int64_t i = 0; i < L; i++) {
        float* s = S + i * Lp;
        for (int64_t jc = 0; jc < Lp; jc += W) { /* additive mask; future keys get -10000 too */
          const vi j = lane + (int32_t)jc;
          store(s + jc, load(s + jc) + vsel((j > (int32_t)i) & (j < (int32_t)L), splat(-10000.0f), load(addm + jc)));
        }
        softmax_row(s, Lp);
        memcpy(P + i * L, s, sizeof(float) * (size_t)L);
        keep_factors(hb, nbytes, (b * L + i) * L, L, keep);
        for (int64_t jc = 0; jc < Lp; jc += W) store(s + jc, load(s + jc) * load(keep + jc));
      }
      mm(S, Lp, 1, L, L, base + (2 * H + h) * dh, stride, dh, ctx + b * L * D + h * dh, D, 0); /* probs . v */
    }
  }
  free(kt);
}

/* gradient of attn_fwd: gctx (B, L, H*dh) -> gqkv (B, L, 3*H*dh), every element written */
void attn_bwd(const float* qkv, const uint8_t* bits, int64_t nbytes, const float* probs,
              const float* gctx, float* gqkv, int64_t B, int64_t L, int64_t H, int64_t dh) {
  const int64_t Lp = PADW(L), stride = 3 * H * dh, D = H * dh;
  /* vt: v transposed (padding columns 0); G: d(dropped probs), then d(scores); Pd: dropped probs */
  float* vt = calloc((size_t)(dh * Lp + 2 * L * Lp + 2 * Lp), sizeof(float));
  float *G = vt + dh * Lp, *Pd = G + L * Lp, *keep = Pd + L * Lp, *p = keep + Lp;
  for (int64_t b = 0; b < B; b++) {
    const float* base = qkv + b * L * stride;
    const float* gc = gctx + b * L * D;
    float* gbase = gqkv + b * L * stride;
    for (int64_t h = 0; h < H; h++) {
      const uint8_t* hb = bits ? bits + h * nbytes : NULL;
      transpose_rows(base + (2 * H + h) * dh, stride, L, dh, Lp, vt);
      mm(gc + h * dh, D, 1, L, dh, vt, Lp, Lp, G, Lp, 0); /* d(dropped probs) (L, Lp) */
      const float* P = probs + (b * H + h) * L * L;
      for (int64_t i = 0; i < L; i++) {
        float *g = G + i * Lp, *pd = Pd + i * Lp;
        memcpy(p, P + i * L, sizeof(float) * (size_t)L); /* p's padding lanes stay 0 */
        keep_factors(hb, nbytes, (b * L + i) * L, L, keep);
        vf acc = {0};
        for (int64_t jc = 0; jc < Lp; jc += W) {
          const vf gj = load(g + jc) * load(keep + jc); /* d(probs) */
          store(g + jc, gj);
          acc += gj * load(p + jc);
        }
        const vf dot = splat(hsum(acc));
        for (int64_t jc = 0; jc < Lp; jc += W) {
          const vf pj = load(p + jc);
          store(pd + jc, pj * load(keep + jc));
          store(g + jc, pj * (load(g + jc) - dot)); /* d(scores) */
        }
      }
      mm(G, Lp, 1, L, L, base + (H + h) * dh, stride, dh, gbase + h * dh, stride, 0);        /* dq = ds k */
      mm(G, 1, Lp, L, L, base + h * dh, stride, dh, gbase + (H + h) * dh, stride, 0);        /* dk = ds^T q */
      mm(Pd, 1, Lp, L, L, gc + h * dh, D, dh, gbase + (2 * H + h) * dh, stride, 0);          /* dv = pd^T dctx */
    }
  }
  free(vt);
}

/* dropout factors of elements e .. e+W-1 as a vector (2 where kept, else 0), e a multiple of W:
   their bits are the W / 8 bytes from e >> 3 */
static inline vf keep_vec(const uint8_t* bits, int64_t e) {
  uint32_t w = 0;
  memcpy(&w, bits + (e >> 3), W / 8);
  const vi b = (((vi){0} + (int32_t)w) >> lane) & 1;
  return __builtin_convertvector(b, vf) * 2.0f;
}

static inline float keep_one(const uint8_t* bits, int64_t e) { return ((bits[e >> 3] >> (e & 7)) & 1) ? 2.0f : 0.0f; }

/* out = x * keep for n elements (x * 0 where dropped, as in torch: -0 and NaN kept) */
void drop_mul(const float* x, const uint8_t* bits, float* out, int64_t n) {
  int64_t e = 0;
  for (; e + W <= n; e += W) store(out + e, load(x + e) * keep_vec(bits, e));
  for (; e < n; e++) out[e] = x[e] * keep_one(bits, e);
}

/* out = x + y * keep for n elements */
void drop_add(const float* x, const float* y, const uint8_t* bits, float* out, int64_t n) {
  int64_t e = 0;
  for (; e + W <= n; e += W) store(out + e, load(x + e) + load(y + e) * keep_vec(bits, e));
  for (; e < n; e++) out[e] = x[e] + y[e] * keep_one(bits, e);
}

/* sums[0:N] += the column sums of rows t0..t1 of m (N, a multiple of W, columns) */
static void add_col_sums(const float* m, int64_t t0, int64_t t1, int64_t N, float* sums) {
  for (int64_t o = 0; o < N; o += W) {
    vf s = splat(0.0f);
    for (int64_t t = t0; t < t1; t++) s += load(m + t * N + o);
    store(sums + o, load(sums + o) + s);
  }
}

#define WG_TOKENS 128 /* a block of tokens' rows of g and x stay in the L1/L2 cache across the tiles */

/* gw (O, I) = g^T x and gb (O,) = the sum of g's rows (gb may be NULL), for g (T, O), x (T, I);
   I a multiple of 4W, O of W. Summing each block of tokens from zero, then adding it, bounds the
   float32 rounding by the block and block-count lengths, not T. */
void linear_wgrad(const float* g, const float* x, float* gw, float* gb, int64_t T, int64_t O, int64_t I) {
  memset(gw, 0, sizeof(float) * (size_t)(O * I));
  if (gb) memset(gb, 0, sizeof(float) * (size_t)O);
  for (int64_t t0 = 0; t0 < T; t0 += WG_TOKENS) {
    const int64_t n = t0 + WG_TOKENS < T ? WG_TOKENS : T - t0;
    mm(g + t0 * O, 1, O, O, n, x + t0 * I, I, I, gw, I, 1); /* A = g^T: A(o, t) = g[t, o] */
    if (gb) add_col_sums(g, t0, t0 + n, O, gb); /* this block's rows of g, still in cache */
  }
}

#define LN_ROWS 128 /* rows per block of the affine gradients' sums */

/* LayerNorm backward over T rows of width D (a multiple of W), from the forward's per-row mean and
   1/std: dx, and the affine gradients dgamma = sum of g * xhat, dbeta = sum of g, each summed over
   blocks of LN_ROWS rows from zero and then added (a one-pass float32 sum over tens of thousands of
   largely cancelling rows is ~1e-4 off; see tests/test_native.py) */
void ln_bwd(const float* g, const float* x, const float* mean, const float* rstd, const float* gamma,
            float* dx, float* dgamma, float* dbeta, int64_t T, int64_t D) {
  memset(dgamma, 0, sizeof(float) * (size_t)D);
  memset(dbeta, 0, sizeof(float) * (size_t)D);
  float* part = malloc(sizeof(float) * (size_t)D); /* this block's sum of g * xhat */
  for (int64_t t0 = 0; t0 < T; t0 += LN_ROWS) {
    const int64_t t1 = t0 + LN_ROWS < T ? t0 + LN_ROWS : T;
    memset(part, 0, sizeof(float) * (size_t)D);
    for (int64_t t = t0; t < t1; t++) {
      const float *gr = g + t * D, *xr = x + t * D;
      const vf m = splat(mean[t]), r = splat(rstd[t]);
      vf sa = {0}, sb = {0};
      for (int64_t j = 0; j < D; j += W) {
        const vf xh = (load(xr + j) - m) * r, gj = load(gr + j), dxh = gj * load(gamma + j);
        sa += dxh, sb += dxh * xh;
        store(part + j, load(part + j) + gj * xh);
      }
      const vf a = splat(hsum(sa) / (float)D), b = splat(hsum(sb) / (float)D);
      for (int64_t j = 0; j < D; j += W) {
        const vf xh = (load(xr + j) - m) * r;
        store(dx + t * D + j, r * (load(gr + j) * load(gamma + j) - a - xh * b));
      }
    }
    for (int64_t j = 0; j < D; j += W) store(dgamma + j, load(dgamma + j) + load(part + j));
    add_col_sums(g, t0, t1, D, dbeta); /* this block's rows of g, still in cache */
  }
  free(part);
}
