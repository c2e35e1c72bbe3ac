// swish_kernels.h -- shared, dependency-free Swish kernels (float/double),
// OpenMP-parallel + SIMD-vectorised.  Compile with -O3 -fno-trapping-math -fopenmp.
#ifndef SWISH_KERNELS_H_
#define SWISH_KERNELS_H_
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace swishk {

// Below this many elements the loop runs on one thread (OpenMP fork/join
// overhead dominates for small tensors).
const int64_t kOmpThreshold = 1 << 15;

// ---------------------------------------------------------------------------
// Branch-free, vectorisable exp for float (Cephes-style range reduction +
// degree-5 polynomial; rel. error ~1e-7).
// ---------------------------------------------------------------------------
// Only called with x <= 0 (see sig_pair), so only the lower clamp is needed.
// NOTE: the ternary is written as "x > c ? x : c" so GCC can emit vmaxps
// (it has the same NaN semantics); together with -fno-trapping-math this lets
// the loops vectorise without extra blends/divisions.
static inline float fast_expf_nonpos(float x) {
  x = x > -87.0f ? x : -87.0f;
  const float log2e = 1.44269504088896341f;
  const float ln2_hi = 0.693359375f;
  const float ln2_lo = -2.12194440e-4f;
  float fx = x * log2e;
  // round to nearest (magic-number trick, valid for |fx| < 2^22; avoids a
  // floorf libm call that blocks vectorisation without -ffast-math)
  const float magic = 12582912.0f;  // 1.5 * 2^23
  float n = (fx + magic) - magic;
  float r = x - n * ln2_hi;
  r = r - n * ln2_lo;
  float p = 1.9875691500E-4f;
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  p = p * r * r + r + 1.0f;
  int32_t e = static_cast<int32_t>(n) + 127;
  int32_t bits = e << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// Numerically stable sigmoid pair without cancellation and without overflow:
//   e = exp(-|z|) in (0,1],  d = 1/(1+e),
//   z >= 0:  s = d,    1-s = e*d
//   z <  0:  s = e*d,  1-s = d
static inline void sig_pair(float z, float* s, float* oms) {
  const float e = fast_expf_nonpos(-std::fabs(z));
  const float d = 1.0f / (1.0f + e);
  const float ed = e * d;
  const bool pos = z >= 0.0f;
  *s = pos ? d : ed;
  *oms = pos ? ed : d;
}
static inline void sig_pair(double z, double* s, double* oms) {
  const double e = std::exp(-std::fabs(z));
  const double d = 1.0 / (1.0 + e);
  const double ed = e * d;
  const bool pos = z >= 0.0;
  *s = pos ? d : ed;
  *oms = pos ? ed : d;
}

// ----------------------------- kernels -------------------------------------
template <typename T>
void swish_fwd(const T* __restrict x, T* __restrict y, int64_t n, T beta) {
#pragma omp parallel for simd schedule(static) if (n >= kOmpThreshold)
  for (int64_t i = 0; i < n; ++i) {
    const T xi = x[i];
    T s, oms;
    sig_pair(beta * xi, &s, &oms);
    y[i] = xi * s;
  }
}

// dx = dy * (s + beta*x*s*(1-s))
template <typename T>
void swish_bwd(const T* __restrict dy, const T* __restrict x, T* __restrict dx,
               int64_t n, T beta) {
#pragma omp parallel for simd schedule(static) if (n >= kOmpThreshold)
  for (int64_t i = 0; i < n; ++i) {
    const T xi = x[i];
    T s, oms;
    sig_pair(beta * xi, &s, &oms);
    dx[i] = dy[i] * (s + beta * xi * s * oms);
  }
}

// same as above + dbeta = sum(dy * x^2 * s*(1-s)). Each fixed-size block is summed on its own
// and the block sums are added in order, so dbeta is bit-identical whatever the thread count
// (exact resume needs that; an OpenMP reduction adds in whatever order threads finish).
template <typename T>
double swish_beta_bwd(const T* __restrict dy, const T* __restrict x, T* __restrict dx,
                      int64_t n, T beta) {
  const int64_t block = 4096;
  const int64_t nblocks = (n + block - 1) / block;
  std::vector<double> partial(nblocks, 0.0);
#pragma omp parallel for schedule(static) if (n >= kOmpThreshold)
  for (int64_t b = 0; b < nblocks; ++b) {
    const int64_t lo = b * block, hi = lo + block < n ? lo + block : n;
    T part = T(0);
#pragma omp simd reduction(+ : part)
    for (int64_t i = lo; i < hi; ++i) {
      const T xi = x[i];
      T s, oms;
      sig_pair(beta * xi, &s, &oms);
      const T ds = s * oms;
      dx[i] = dy[i] * (s + beta * xi * ds);
      part += dy[i] * xi * xi * ds;
    }
    partial[b] = static_cast<double>(part);
  }
  double acc = 0.0;
  for (int64_t b = 0; b < nblocks; ++b) acc += partial[b];
  return acc;
}


}  // namespace swishk
#endif  // SWISH_KERNELS_H_
