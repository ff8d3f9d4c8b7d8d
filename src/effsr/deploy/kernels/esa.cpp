// effsr native CPU kernels for the ESA block (RLFN, Kong et al. 2022; the ESA of Liu et al. 2020, RFDN) and the
// pixel shuffle. Loaded by effsr/deploy/native.py, which documents when they are used and how they are checked.
//
// Why: after oneDNN's fused convolutions, RLFN's remaining time is memory-bound glue around its 3x3 convolutions
// (benchmarks/RESULTS.md). PyTorch's oneDNN binding fuses only ReLU after a binary post-op, so the residual add, the
// ESA's 1x1 convs, its low-resolution branch and the gate take nine passes per block. These kernels do the same
// arithmetic in three:
//
//   effsr_esa_head:  s = a + x (in place into a);  c1 = W1 s + b1                      (1x1 conv, C -> F)
//   effsr_esa_low:   c3 = conv3(max_pool(conv2(c1)))                                   (16 channels, small maps)
//   effsr_esa_tail:  t = Wf c1 + bf + bilinear(c3);  g = sigmoid(W4 t + b4);  out = (W5 s + b5) * g
//   effsr_pixel_shuffle: NHWC conv output -> NCHW image (a copy)
//
// bilinear() is F.interpolate(mode="bilinear", align_corners=False) to the size of s, with PyTorch's source-index
// rule (aten/src/ATen/native/UpSample.h, area_pixel_compute_source_index: src = scale * (dst + 0.5) - 0.5, clamped
// at 0, scale = in / out in float). exp() is Cephes' expf (S. Moshier): Cody-Waite reduction by ln 2 and a degree-6
// polynomial, ~1 ulp on the sigmoid's range. Results equal PyTorch's within float rounding (tests/test_native.py).
//
// Layout: every map is channels-last (NHWC) float32, dense; 1x1 weights are [in][out], 3x3 weights
// [ky][kx][in][out], row-major. Channels: C in {16, 32, 48, 64}, F == 16. Register blocking: P pixels of C / L
// vectors each (L = 16 lanes with AVX-512F, 8 with AVX2 + FMA) stay in registers while the weights stream. Builds
// without either instruction set have no kernels; effsr_native_lanes() tells the caller.
#include <cstddef>
#include <cstring>

extern "C" int effsr_native_abi() { return 2; }

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>

namespace {
// One set of vector helpers, spelled for the widest instruction set the compiler targets: the intrinsics of both
// follow the pattern _mm<bits>_<op>_ps (Intel Intrinsics Guide); only rounding differs.
#if defined(__AVX512F__)
constexpr int L = 16;  // float lanes per vector
constexpr int REGS = 32;
typedef __m512 V;
typedef __m512i VI;
#define EFFSR_MM(op) _mm512_##op
inline V round_nearest(V a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline V as_float(VI e) { return _mm512_castsi512_ps(e); }
#else
constexpr int L = 8;
constexpr int REGS = 16;
typedef __m256 V;
typedef __m256i VI;
#define EFFSR_MM(op) _mm256_##op
inline V round_nearest(V a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline V as_float(VI e) { return _mm256_castsi256_ps(e); }
#endif
inline V ld(const float* p) { return EFFSR_MM(loadu_ps)(p); }
inline void st(float* p, V v) { EFFSR_MM(storeu_ps)(p, v); }
inline V bc(float x) { return EFFSR_MM(set1_ps)(x); }
inline V fma(V a, V b, V c) { return EFFSR_MM(fmadd_ps)(a, b, c); }
inline V add(V a, V b) { return EFFSR_MM(add_ps)(a, b); }
inline V sub(V a, V b) { return EFFSR_MM(sub_ps)(a, b); }
inline V mul(V a, V b) { return EFFSR_MM(mul_ps)(a, b); }
inline V div(V a, V b) { return EFFSR_MM(div_ps)(a, b); }
inline V vmin(V a, V b) { return EFFSR_MM(min_ps)(a, b); }
inline V vmax(V a, V b) { return EFFSR_MM(max_ps)(a, b); }
inline V pow2i(V n) {  // 2^n for integral n in [-126, 127], built in the exponent field
  return as_float(EFFSR_MM(slli_epi32)(EFFSR_MM(add_epi32)(EFFSR_MM(cvtps_epi32)(n), EFFSR_MM(set1_epi32)(127)), 23));
}
#undef EFFSR_MM

inline V vexp(V x) {
  x = vmin(x, bc(88.3762626647949f));
  x = vmax(x, bc(-87.3365447505531f));
  const V n = round_nearest(mul(x, bc(1.44269504088896341f)));
  V r = fma(n, bc(-0.693359375f), x);  // ln 2 in two parts (Cephes C1, C2)
  r = fma(n, bc(2.12194440e-4f), r);
  V p = bc(1.9875691500e-4f);
  p = fma(p, r, bc(1.3981999507e-3f));
  p = fma(p, r, bc(8.3334519073e-3f));
  p = fma(p, r, bc(4.1665795894e-2f));
  p = fma(p, r, bc(1.6666665459e-1f));
  p = fma(p, r, bc(5.0000001201e-1f));
  p = fma(p, mul(r, r), add(r, bc(1.0f)));
  return mul(p, pow2i(n));
}

inline V vsigmoid(V a) { return div(bc(1.0f), add(bc(1.0f), vexp(sub(bc(0.0f), a)))); }

// Pixels per register block: P x (C / L) accumulators plus C / L weight vectors fit the register file.
// AVX2 (16 registers) leaves no room for the weight vectors at C = 48; they are then read from L1 as FMA operands.
template <int C> constexpr int block_pixels() {
  constexpr int nc = C / L;
  constexpr int p = L == 16 ? (REGS - 4) / nc - 1 : (REGS - 2) / nc;
  return p > 8 ? 8 : (p < 1 ? 1 : p);
}

struct Tap { int a, b; float la, ha; };  // bilinear taps along one axis: indices and weights

inline Tap tap(float scale, int dst, int in_size) {
  float src = scale * (dst + 0.5f) - 0.5f;
  if (src < 0) src = 0;
  const int a = static_cast<int>(src);
  const float l = src - a;
  return Tap{a, a + (a < in_size - 1 ? 1 : 0), l, 1.0f - l};
}

// ---- the register-blocked matrix product all kernels share ------------------------------------------------------
// acc[p][:] (NO outputs as NO / L vectors, P pixels) are the accumulators; `in` holds P rows of K inputs, `stride`
// floats apart; `w` is [K][NO]. One weight row is loaded per k and reused for the P pixels.
template <int P, int NO>
inline void fill(V (&acc)[P][NO / L], const float* bias) {
#pragma GCC unroll 16
  for (int p = 0; p < P; ++p)
#pragma GCC unroll 8
    for (int j = 0; j < NO / L; ++j) acc[p][j] = ld(bias + L * j);
}

template <int P, int K, int NO>
inline void mac(V (&acc)[P][NO / L], const float* in, size_t stride, const float* w) {
#pragma GCC unroll 4
  for (int k = 0; k < K; ++k) {
    V wk[NO / L];
#pragma GCC unroll 8
    for (int j = 0; j < NO / L; ++j) wk[j] = ld(w + k * NO + L * j);
#pragma GCC unroll 16
    for (int p = 0; p < P; ++p) {
      const V v = bc(in[p * stride + k]);
#pragma GCC unroll 8
      for (int j = 0; j < NO / L; ++j) acc[p][j] = fma(v, wk[j], acc[p][j]);
    }
  }
}

template <int P, int NO>
inline void store(float* out, size_t stride, const V (&acc)[P][NO / L]) {
#pragma GCC unroll 16
  for (int p = 0; p < P; ++p)
#pragma GCC unroll 8
    for (int j = 0; j < NO / L; ++j) st(out + p * stride + L * j, acc[p][j]);
}

// ---- tail: one block of exactly P pixels -------------------------------------------------------------------------
template <int C, int F, int P>
inline void tail_block(const float* __restrict sp, const float* __restrict c1, const float* r0, const float* r1,
                       const Tap& ty, const Tap* tx, const float* wf, const float* bf, const float* w4,
                       const float* b4, const float* w5, const float* b5, float* __restrict op) {
  static_assert(F == 16 && C % L == 0, "F must be 16, C a multiple of the vector width");
  constexpr int NC = C / L, NF = F / L;
  alignas(64) float t[P][F];  // conv_f(c1) + bf + bilinear(c3)
  {
    V u[P][NF];
#pragma GCC unroll 16
    for (int p = 0; p < P; ++p) {
      const Tap& q = tx[p];
#pragma GCC unroll 2
      for (int j = 0; j < NF; ++j) {
        const V top = fma(bc(q.ha), ld(r0 + q.a * F + L * j), mul(bc(q.la), ld(r0 + q.b * F + L * j)));
        const V bot = fma(bc(q.ha), ld(r1 + q.a * F + L * j), mul(bc(q.la), ld(r1 + q.b * F + L * j)));
        u[p][j] = add(ld(bf + L * j), fma(bc(ty.ha), top, mul(bc(ty.la), bot)));
      }
    }
    mac<P, F, F>(u, c1, F, wf);
    store<P, F>(&t[0][0], F, u);
  }
  alignas(64) float g[P][C];  // sigmoid(conv4(t))
  {
    V a[P][NC];
    fill<P, C>(a, b4);
    mac<P, F, C>(a, &t[0][0], F, w4);
#pragma GCC unroll 16
    for (int p = 0; p < P; ++p)
#pragma GCC unroll 8
      for (int j = 0; j < NC; ++j) a[p][j] = vsigmoid(a[p][j]);
    store<P, C>(&g[0][0], C, a);
  }
  V acc[P][NC];  // c5(s) * g
  fill<P, C>(acc, b5);
  mac<P, C, C>(acc, sp, C, w5);
#pragma GCC unroll 16
  for (int p = 0; p < P; ++p)
#pragma GCC unroll 8
    for (int j = 0; j < NC; ++j) st(op + p * C + L * j, mul(acc[p][j], ld(g[p] + L * j)));
}

template <int C, int F>
void tail(int N, int H, int W, int h3, int w3, const float* s, const float* c1, const float* c3, const float* wf,
          const float* bf, const float* w4, const float* b4, const float* w5, const float* b5, float* out,
          int threads) {
  constexpr int P = block_pixels<C>();
  const float sh = static_cast<float>(h3) / H, sw = static_cast<float>(w3) / W;
  Tap* tx = new Tap[W + P];
  for (int x = 0; x < W + P; ++x) tx[x] = tap(sw, x < W ? x : W - 1, w3);  // the padded tail repeats the last
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads)
  for (int n = 0; n < N; ++n) {
    for (int y = 0; y < H; ++y) {
      const Tap ty = tap(sh, y, h3);
      const float* low = c3 + static_cast<size_t>(n) * h3 * w3 * F;
      const float* r0 = low + static_cast<size_t>(ty.a) * w3 * F;
      const float* r1 = low + static_cast<size_t>(ty.b) * w3 * F;
      const size_t row = (static_cast<size_t>(n) * H + y) * W;
      int x0 = 0;
      for (; x0 + P <= W; x0 += P) {
        const size_t o = row + x0;
        tail_block<C, F, P>(s + o * C, c1 + o * F, r0, r1, ty, tx + x0, wf, bf, w4, b4, w5, b5, out + o * C);
      }
      if (x0 < W) {  // the row's last pixels go through zero-filled buffers
        const int np = W - x0;
        const size_t o = row + x0;
        alignas(64) float sb[P * C] = {}, cb[P * F] = {}, ob[P * C];
        std::memcpy(sb, s + o * C, sizeof(float) * np * C);
        std::memcpy(cb, c1 + o * F, sizeof(float) * np * F);
        tail_block<C, F, P>(sb, cb, r0, r1, ty, tx + x0, wf, bf, w4, b4, w5, b5, ob);
        std::memcpy(out + o * C, ob, sizeof(float) * np * C);
      }
    }
  }
  delete[] tx;
}

// ---- head: s = a + x in place, c1 = W1 s + b1 for one block of exactly P pixels ----------------------------------
template <int C, int F, int P>
inline void head_block(float* __restrict a, const float* __restrict x, const float* w1, const float* b1,
                       float* __restrict c1) {
  static_assert(F == 16 && C % L == 0, "F must be 16, C a multiple of the vector width");
#pragma GCC unroll 16
  for (int p = 0; p < P; ++p)
#pragma GCC unroll 8
    for (int j = 0; j < C / L; ++j) {
      float* q = a + p * C + L * j;
      st(q, add(ld(q), ld(x + p * C + L * j)));
    }
  V u[P][F / L];
  fill<P, F>(u, b1);
  mac<P, C, F>(u, a, C, w1);
  store<P, F>(c1, F, u);
}

template <int C, int F>
void head(int N, int H, int W, float* a, const float* x, const float* w1, const float* b1, float* c1, int threads) {
  constexpr int P = 8;
  const long pixels = static_cast<long>(N) * H * W;
  const long blocks = pixels / P;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (long i = 0; i < blocks; ++i) {
    const size_t o = static_cast<size_t>(i) * P;
    head_block<C, F, P>(a + o * C, x + o * C, w1, b1, c1 + o * F);
  }
  const long rest = pixels - blocks * P;
  if (rest > 0) {
    const size_t o = static_cast<size_t>(blocks) * P;
    alignas(64) float ab[P * C] = {}, xb[P * C] = {}, cb[P * F];
    std::memcpy(ab, a + o * C, sizeof(float) * rest * C);
    std::memcpy(xb, x + o * C, sizeof(float) * rest * C);
    head_block<C, F, P>(ab, xb, w1, b1, cb);
    std::memcpy(a + o * C, ab, sizeof(float) * rest * C);
    std::memcpy(c1 + o * F, cb, sizeof(float) * rest * F);
  }
}

// ---- low-resolution branch: c3 = conv3(max_pool(conv2(c1))) ------------------------------------------------------
// conv2: 3x3, stride `st2`, no padding; max_pool: kernel `pk`, stride `ps`, no padding, floor mode; conv3: 3x3,
// stride 1, zero padding 1. Weights are [ky][kx][in][out]. All maps have 16 channels.
template <int P>
inline void conv3x3_block(const float* in, int in_w, int sx, const float* w, const float* b, float* out) {
  V acc[P][16 / L];
  fill<P, 16>(acc, b);
  for (int ky = 0; ky < 3; ++ky)
    for (int kx = 0; kx < 3; ++kx)
      mac<P, 16, 16>(acc, in + (static_cast<size_t>(ky) * in_w + kx) * 16, static_cast<size_t>(sx) * 16,
                        w + (ky * 3 + kx) * 16 * 16);
  store<P, 16>(out, 16, acc);
}

// One output row of a 3x3 conv (16 -> 16) over a row-major [h][w][16] input whose rows start at `in` (already
// offset to the window's top-left), with input stride `sx` along x.
inline void conv3x3_row(const float* in, int in_w, int sx, int out_w, const float* w, const float* b, float* out) {
  constexpr int P = L == 16 ? 8 : 6;
  int x = 0;
  for (; x + P <= out_w; x += P) conv3x3_block<P>(in + static_cast<size_t>(x) * sx * 16, in_w, sx, w, b, out + x * 16);
  for (; x < out_w; ++x) conv3x3_block<1>(in + static_cast<size_t>(x) * sx * 16, in_w, sx, w, b, out + x * 16);
}

void low(int N, int H, int W, int st2, int pk, int ps, const float* c1, const float* k2, const float* b2,
         const float* k3, const float* b3, float* t2, float* t3, float* out, int threads) {
  constexpr int NF = 16 / L;
  const int h2 = (H - 3) / st2 + 1, w2 = (W - 3) / st2 + 1;
  const int h3 = (h2 - pk) / ps + 1, w3 = (w2 - pk) / ps + 1;
  const int pw = w3 + 2;  // the pooled map with a zero border of 1 for conv3
#pragma omp parallel num_threads(threads)
  {
#pragma omp for collapse(2) schedule(static)
    for (int n = 0; n < N; ++n)
      for (int y = 0; y < h2; ++y)
        conv3x3_row(c1 + ((static_cast<size_t>(n) * H + static_cast<size_t>(y) * st2) * W) * 16, W, st2, w2, k2, b2,
                    t2 + ((static_cast<size_t>(n) * h2 + y) * w2) * 16);
#pragma omp for collapse(2) schedule(static)
    for (int n = 0; n < N; ++n)
      for (int y = 0; y < h3 + 2; ++y) {
        float* prow = t3 + ((static_cast<size_t>(n) * (h3 + 2) + y) * pw) * 16;
        if (y == 0 || y == h3 + 1) {
          std::memset(prow, 0, sizeof(float) * pw * 16);
          continue;
        }
        std::memset(prow, 0, sizeof(float) * 16);
        std::memset(prow + (pw - 1) * 16, 0, sizeof(float) * 16);
        for (int x = 0; x < w3; ++x) {
          const float* win = t2 + ((static_cast<size_t>(n) * h2 + static_cast<size_t>(y - 1) * ps) * w2 + x * ps) * 16;
#pragma GCC unroll 2
          for (int j = 0; j < NF; ++j) {
            V m = ld(win + L * j);
            for (int i = 0; i < pk; ++i)
              for (int k = 0; k < pk; ++k) m = vmax(m, ld(win + (static_cast<size_t>(i) * w2 + k) * 16 + L * j));
            st(prow + (x + 1) * 16 + L * j, m);
          }
        }
      }
#pragma omp for collapse(2) schedule(static)
    for (int n = 0; n < N; ++n)
      for (int y = 0; y < h3; ++y)
        conv3x3_row(t3 + ((static_cast<size_t>(n) * (h3 + 2) + y) * pw) * 16, pw, 1, w3, k3, b3,
                    out + ((static_cast<size_t>(n) * h3 + y) * w3) * 16);
  }
}

// ---- pixel shuffle: NHWC [n][h][w][c*r*r] -> NCHW [n][c][h*r][w*r] -----------------------------------------------
void pixel_shuffle(int N, int C, int H, int W, int r, const float* in, float* out, int threads) {
  const int cin = C * r * r;
  const size_t ow = static_cast<size_t>(W) * r;
#pragma omp parallel for collapse(3) schedule(static) num_threads(threads)
  for (int n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c)
      for (int h = 0; h < H; ++h) {
        const float* src = in + (static_cast<size_t>(n) * H + h) * W * cin + static_cast<size_t>(c) * r * r;
        for (int i = 0; i < r; ++i) {
          float* dst = out + ((static_cast<size_t>(n) * C + c) * H * r + static_cast<size_t>(h) * r + i) * ow;
          const float* s = src + i * r;
          if (r == 4) {
            for (int x = 0; x < W; ++x) std::memcpy(dst + x * 4, s + static_cast<size_t>(x) * cin, 16);
          } else {
            for (int x = 0; x < W; ++x)
              for (int j = 0; j < r; ++j) dst[static_cast<size_t>(x) * r + j] = s[static_cast<size_t>(x) * cin + j];
          }
        }
      }
}
}  // namespace

extern "C" int effsr_native_lanes() { return L; }

#define EFFSR_DISPATCH(CALL)                 \
  if (F != 16) return -1;                    \
  switch (C) {                               \
    case 16: CALL(16); return 0;             \
    case 32: CALL(32); return 0;             \
    case 48: CALL(48); return 0;             \
    case 64: CALL(64); return 0;             \
    default: return -1;                      \
  }

extern "C" int effsr_esa_tail(int N, int C, int F, int H, int W, int h3, int w3, const float* s, const float* c1,
                              const float* c3, const float* wf, const float* bf, const float* w4, const float* b4,
                              const float* w5, const float* b5, float* out, int threads) {
#define EFFSR_TAIL(CC) tail<CC, 16>(N, H, W, h3, w3, s, c1, c3, wf, bf, w4, b4, w5, b5, out, threads)
  EFFSR_DISPATCH(EFFSR_TAIL)
#undef EFFSR_TAIL
}

extern "C" int effsr_esa_head(int N, int C, int F, int H, int W, float* a, const float* x, const float* w1,
                              const float* b1, float* c1, int threads) {
#define EFFSR_HEAD(CC) head<CC, 16>(N, H, W, a, x, w1, b1, c1, threads)
  EFFSR_DISPATCH(EFFSR_HEAD)
#undef EFFSR_HEAD
}

extern "C" int effsr_esa_low(int N, int F, int H, int W, int st2, int pk, int ps, const float* c1, const float* k2,
                             const float* b2, const float* k3, const float* b3, float* t2, float* t3, float* out,
                             int threads) {
  if (F != 16 || H < 3 || W < 3 || st2 < 1 || pk < 1 || ps < 1) return -1;
  low(N, H, W, st2, pk, ps, c1, k2, b2, k3, b3, t2, t3, out, threads);
  return 0;
}

extern "C" int effsr_pixel_shuffle(int N, int C, int H, int W, int r, const float* in, float* out, int threads) {
  if (r < 1) return -1;
  pixel_shuffle(N, C, H, W, r, in, out, threads);
  return 0;
}

#else  // neither AVX-512F nor AVX2 + FMA: the caller keeps PyTorch's operators

extern "C" int effsr_native_lanes() { return 0; }
extern "C" int effsr_esa_tail(int, int, int, int, int, int, int, const float*, const float*, const float*,
                              const float*, const float*, const float*, const float*, const float*, const float*,
                              float*, int) { return -1; }
extern "C" int effsr_esa_head(int, int, int, int, int, float*, const float*, const float*, const float*, float*,
                              int) { return -1; }
extern "C" int effsr_esa_low(int, int, int, int, int, int, int, const float*, const float*, const float*,
                             const float*, const float*, float*, float*, float*, int) { return -1; }
extern "C" int effsr_pixel_shuffle(int, int, int, int, int, const float*, float*, int) { return -1; }
#endif
