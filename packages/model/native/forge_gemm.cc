// forge's native matrix product for the tfjs wasm backend (see src/backend/native-gemm.ts).
//
// gemm(heap, aOffset, bOffset, cOffset, batch, m, n, k, transposeA, transposeB, strideA,
//      strideB, strideC) computes C[i] = op(A[i]) · op(B[i]) for i < batch with OpenBLAS' sgemm,
// where the operands are row-major float32 arrays at byte offsets into `heap` (the wasm
// backend's memory) and strides count floats between batch items (0: one operand shared by
// every item). A product large enough to pay for waking the pool is split across it: batches
// first, else rows (or columns, for a wide one-row product). OpenBLAS itself runs one thread;
// the pool's threads spin ~15–40 µs after a job (see `Pool`), then sleep.
// threads(n) sizes the pool (n ≥ 1); threads() returns its size.
// exp(heap, inOffset, outOffset, count) writes e^x elementwise (AVX2 where the CPU has it):
// the wasm backend's own Exp calls the C library once per element, ~10× slower.
// gelu(heap, x, y, s, count) is tanh-GELU for training: y = x·σ(2u), u = c·(x + k·x³), saving
// σ(2u) in s; geluGrad(heap, dy, x, s, dx, count) is its gradient, dy·(σ + x·σ(1−σ)·2c(1+3kx²)).
// adamw(heap, x, m, v, g, x2, m2, v2, count, β1, β2, 1−β1^t, 1−β2^t, ε, lr, lr·decay): one
// AdamW update into x2, m2, v2 (see src/optimizer.ts).
// layerNorm(heap, x, gamma, beta, y, xhat, rstd, rows, cols, hasBeta, ε): training LayerNorm
// over the last axis, saving x̂ and 1/σ per row; layerNormGrad(heap, dy, gamma, xhat, rstd, dx,
// rows, cols): dx = rstd·(d − mean(d) − x̂·mean(d·x̂)) with d = dy·γ.
// causalSoftmax(heap, s, p, rows, t, tk): softmax of attention scores [rows = B·H·T, tk] where
// row r (query r mod t) sees keys up to (r mod t) + tk − t, zero beyond; softmaxGrad(heap, dy,
// p, dx, rows, cols): dx = p ⊙ (dy − Σ p ⊙ dy), row by row. Both split rows across the pool.
// attend(heap, ...) is one decode step's attention for every row and head of the JS decode
// step's cache (see src/fast-decode.ts `attend` for the layout).
// decodeStep(heap, plan, slot) is the JS decode step of a GPT-2 model whole: every layer for
// every row in one call, its products on weights packed in panels (no per-call packing), the
// rows split across the pool for a large batch (see `DecodeStep`).
#include <immintrin.h>
#include <node_api.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

extern "C" {
void cblas_sgemm(int order, int transA, int transB, int m, int n, int k, float alpha,
                 const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc);
void cblas_sgemv(int order, int trans, int m, int n, float alpha, const float* a, int lda,
                 const float* x, int incx, float beta, float* y, int incy);
void openblas_set_num_threads(int threads);
}

namespace {

constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;
// Below this many multiply-adds a product runs on the calling thread. Measured on a 2-core
// AVX2 machine, two threads first win at ~2^24 (256 × 512 × 128: 417 µs on one, 398 on two;
// 1024 × 512 × 128: 1,632 and 900); below that, waking the pool and splitting into thinner
// products that OpenBLAS runs less well cost more than the second core gives. With the
// spinning pool, 2^22 trained slower still (V512 d128 L4 T128 B8: 131–162 ms a step against
// 119–140).
constexpr double kParallelMacs = 16777216;

// The pool's threads spin for up to kSpins pauses (~15–40 µs) after each job before they sleep
// on a condition variable, and the caller spins as long for their results: back-to-back
// products (a training step's) then hand work over without a futex wake-up, which on a
// virtual machine can cost as much as a small product (the hypervisor must wake the idle
// vCPU). Measured on a 2-core VM, training V512 d128 L4 T128 B8 on two threads, median ms a
// step over four alternations: sleeping at once 115–130, spinning 2^11 pauses 99–127, 2^14
// 100–116; with another busy process on the second core: 133–157, 142–145 and 222–240 (a long
// spin spends the thread's share of the busy core, and the scheduler then runs it late).
constexpr int kSpins = 1 << 11;

class Pool {
 public:
  ~Pool() { Stop(); }

  void Resize(int threads) {
    std::lock_guard<std::mutex> calls(call_mu_);
    Stop();
    size_ = threads;
    // Each worker starts from the current generation, read here: a worker that read it itself
    // could start after the first Run() had already advanced it, and wait forever.
    const uint64_t start = generation_.load();
    for (int i = 1; i < threads; i++) workers_.emplace_back([this, i, start] { Loop(i, start); });
  }

  int Size() const { return size_; }

  // Runs job(0..Size()-1), job(0) on the calling thread; returns when all are done.
  void Run(const std::function<void(int)>& job) {
    std::lock_guard<std::mutex> calls(call_mu_);
    if (size_ == 1) {
      job(0);
      return;
    }
    job_ = &job;
    pending_.store(size_ - 1);
    {
      // under the lock, so that a worker about to sleep sees the new generation or the wake-up
      std::lock_guard<std::mutex> lock(mu_);
      generation_.fetch_add(1);
    }
    wake_.notify_all();
    job(0);
    for (int i = 0; i < kSpins && pending_.load() != 0; i++) _mm_pause();
    if (pending_.load() != 0) {
      std::unique_lock<std::mutex> lock(mu_);
      done_.wait(lock, [this] { return pending_.load() == 0; });
    }
    job_ = nullptr;
  }

 private:
  void Loop(int index, uint64_t seen) {
    for (;;) {
      for (int i = 0; i < kSpins && generation_.load() == seen && !quit_.load(); i++) _mm_pause();
      if (generation_.load() == seen && !quit_.load()) {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock, [&] { return quit_.load() || generation_.load() != seen; });
      }
      if (quit_.load()) return;
      seen = generation_.load();
      (*job_)(index);
      if (pending_.fetch_sub(1) == 1) {
        std::lock_guard<std::mutex> lock(mu_);
        done_.notify_one();
      }
    }
  }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      quit_.store(true);
    }
    wake_.notify_all();
    for (auto& worker : workers_) worker.join();
    workers_.clear();
    quit_.store(false);
    size_ = 1;
  }

  std::mutex call_mu_;  // one product at a time (the addon may be loaded by several threads)
  std::mutex mu_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  int size_ = 1;
  std::atomic<bool> quit_{false};
};

Pool pool;

// Rows [r0, r1) of fn across the pool when there are `elements` ≥ 2^18 to touch. Measured
// with the spinning pool (2-core VM, 2^19 elements, ns an element on one thread and split in
// two): GELU 0.85–0.96 and 0.45–0.47, causal softmax 0.59–0.78 and 0.37–0.48.
template <typename Fn>
void ForRows(int64_t rows, int64_t elements, Fn fn) {
  const int threads = pool.Size();
  if (threads == 1 || elements < (1 << 18)) {
    fn(0, rows);
    return;
  }
  pool.Run([&](int t) { fn(rows * t / threads, rows * (t + 1) / threads); });
}

// Elements [i0, i1) of fn across the pool, as ForRows, with every boundary at a multiple of 8
// so that each element takes the same vector or tail path as on one thread.
template <typename Fn>
void ForElements(int64_t count, Fn fn) {
  ForRows(count, count, [&](int64_t i0, int64_t i1) {
    const int64_t end = i1 == count ? count : i1 & ~int64_t{7};
    fn(i0 & ~int64_t{7}, end);
  });
}

struct Product {
  const float* a;
  const float* b;
  float* c;
  int64_t batch, m, n, k, strideA, strideB, strideC;
  bool transA, transB;

  // op(A)[rows r0..r1) · op(B)[:, cols c0..c1) of batch item i.
  void Block(int64_t i, int64_t r0, int64_t r1, int64_t c0, int64_t c1) const {
    if (r1 <= r0 || c1 <= c0) return;
    const float* ai = a + i * strideA + (transA ? r0 : r0 * k);
    const float* bi = b + i * strideB + (transB ? c0 * k : c0);
    float* ci = c + i * strideC + r0 * n + c0;
    if (k == 0) {
      for (int64_t r = 0; r < r1 - r0; r++)
        for (int64_t col = 0; col < c1 - c0; col++) ci[r * n + col] = 0;
      return;
    }
    if (r1 - r0 == 1 && !transA) {
      // one row (a decode step at batch 1): a matrix-vector product, which reads B once where
      // sgemm would first pack all of it
      const int cols = static_cast<int>(c1 - c0), depth = static_cast<int>(k);
      if (transB)
        cblas_sgemv(kRowMajor, kNoTrans, cols, depth, 1.0f, bi, depth, ai, 1, 0.0f, ci, 1);
      else
        cblas_sgemv(kRowMajor, kTrans, depth, cols, 1.0f, bi, static_cast<int>(n), ai, 1, 0.0f, ci,
                    1);
      return;
    }
    cblas_sgemm(kRowMajor, transA ? kTrans : kNoTrans, transB ? kTrans : kNoTrans,
                static_cast<int>(r1 - r0), static_cast<int>(c1 - c0), static_cast<int>(k), 1.0f,
                ai, static_cast<int>(transA ? m : k), bi, static_cast<int>(transB ? k : n), 0.0f,
                ci, static_cast<int>(n));
  }

  void Run() const {
    const int threads = pool.Size();
    const double macs = static_cast<double>(batch) * m * n * k;
    if (threads == 1 || macs < kParallelMacs) {
      for (int64_t i = 0; i < batch; i++) Block(i, 0, m, 0, n);
      return;
    }
    pool.Run([&](int t) {
      if (batch >= threads) {
        for (int64_t i = batch * t / threads; i < batch * (t + 1) / threads; i++)
          Block(i, 0, m, 0, n);
      } else if (m >= n) {
        for (int64_t i = 0; i < batch; i++) Block(i, m * t / threads, m * (t + 1) / threads, 0, n);
      } else {
        for (int64_t i = 0; i < batch; i++) Block(i, 0, m, n * t / threads, n * (t + 1) / threads);
      }
    });
  }
};

napi_value Throw(napi_env env, const std::string& message) {
  napi_throw_range_error(env, "E_NATIVE_GEMM", message.c_str());
  return nullptr;
}

// A call's arguments: the heap (a Uint8Array), then `ints` non-negative integers, then
// `numbers` numbers.
struct Args {
  uint8_t* heap = nullptr;
  int64_t bytes = 0;
  int64_t ints[16] = {};
  double numbers[8] = {};
};

// Reads `name`'s arguments into `args`; false, with a JavaScript error thrown, when one is
// missing or bad.
bool Parse(napi_env env, napi_callback_info info, const std::string& name, size_t ints,
           size_t numbers, Args& args) {
  napi_value argv[25];
  size_t argc = 25;
  const size_t wanted = 1 + ints + numbers;
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok || argc != wanted) {
    Throw(env, name + " takes " + std::to_string(wanted) + " arguments");
    return false;
  }
  void* data = nullptr;
  size_t length = 0;
  napi_typedarray_type type;
  if (napi_get_typedarray_info(env, argv[0], &type, &length, &data, nullptr, nullptr) != napi_ok ||
      type != napi_uint8_array) {
    Throw(env, name + "'s heap must be a Uint8Array");
    return false;
  }
  for (size_t i = 0; i < ints; i++) {
    if (napi_get_value_int64(env, argv[1 + i], &args.ints[i]) != napi_ok || args.ints[i] < 0) {
      Throw(env, name + "'s offsets and sizes must be non-negative integers");
      return false;
    }
  }
  for (size_t i = 0; i < numbers; i++) {
    if (napi_get_value_double(env, argv[1 + ints + i], &args.numbers[i]) != napi_ok) {
      Throw(env, name + "'s last argument must be a number");
      return false;
    }
  }
  args.heap = static_cast<uint8_t*>(data);
  args.bytes = static_cast<int64_t>(length);
  return true;
}

// Every offset float-aligned, with `floats` floats from it inside the heap.
bool Inside(const Args& args, std::initializer_list<int64_t> offsets, int64_t floats) {
  for (int64_t offset : offsets)
    if (offset % 4 != 0 || offset + 4 * floats > args.bytes) return false;
  return true;
}

template <typename T>
T* At(const Args& args, int64_t offset) {
  return reinterpret_cast<T*>(args.heap + offset);
}

napi_value Gemm(napi_env env, napi_callback_info info) {
  Args args;
  if (!Parse(env, info, "gemm", 12, 0, args)) return nullptr;
  const int64_t* v = args.ints;
  Product p;
  p.batch = v[3], p.m = v[4], p.n = v[5], p.k = v[6];
  p.transA = v[7] != 0, p.transB = v[8] != 0;
  p.strideA = v[9], p.strideB = v[10], p.strideC = v[11];
  auto fits = [&](int64_t offset, int64_t stride, int64_t size) {
    return p.batch > 0 && Inside(args, {offset}, (p.batch - 1) * stride + size);
  };
  if (p.batch == 0 || p.m == 0 || p.n == 0) return nullptr;
  if (p.m > INT32_MAX || p.n > INT32_MAX || p.k > INT32_MAX)
    return Throw(env, "gemm's dimensions must fit in 32 bits");
  if (!fits(v[0], p.strideA, p.m * p.k) || !fits(v[1], p.strideB, p.k * p.n) ||
      !fits(v[2], p.strideC, p.m * p.n))
    return Throw(env, "gemm's operands lie outside the heap");
  p.a = At<const float>(args, v[0]);
  p.b = At<const float>(args, v[1]);
  p.c = At<float>(args, v[2]);
  p.Run();
  return nullptr;
}

// e^x for float32 after Cephes' expf: x = n·ln2 + r with |r| ≤ ln2/2 (ln2 split in two so
// n·ln2 is exact), e^r by a degree-5 polynomial, times 2^n built in the exponent bits. Within
// 2 ulp of the correctly rounded result; +∞ above 88.72, 0 below −103.97 (results that would
// be subnormal, between −103.97 and −87.34, come out as e^−87.34), NaN stays NaN.
__attribute__((target("avx2,fma"))) inline __m256 Exp8(__m256 in) {
  const __m256 hi = _mm256_set1_ps(88.3762626647949f), lo = _mm256_set1_ps(-87.3365447504f);
  const __m256 overflow = _mm256_set1_ps(88.7228391117f), underflow = _mm256_set1_ps(-103.972f);
  const __m256 log2e = _mm256_set1_ps(1.44269504088896341f);
  const __m256 c1 = _mm256_set1_ps(0.693359375f), c2 = _mm256_set1_ps(-2.12194440e-4f);
  const __m256 p0 = _mm256_set1_ps(1.9875691500e-4f), p1 = _mm256_set1_ps(1.3981999507e-3f),
               p2 = _mm256_set1_ps(8.3334519073e-3f), p3 = _mm256_set1_ps(4.1665795894e-2f),
               p4 = _mm256_set1_ps(1.6666665459e-1f), p5 = _mm256_set1_ps(5.0000001201e-1f);
  const __m256 one = _mm256_set1_ps(1.0f), inf = _mm256_set1_ps(INFINITY);
  __m256 v = _mm256_min_ps(_mm256_max_ps(in, lo), hi);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(v, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  v = _mm256_fnmadd_ps(n, c1, v);
  v = _mm256_fnmadd_ps(n, c2, v);
  const __m256 v2 = _mm256_mul_ps(v, v);
  __m256 p = _mm256_fmadd_ps(p0, v, p1);
  p = _mm256_fmadd_ps(p, v, p2);
  p = _mm256_fmadd_ps(p, v, p3);
  p = _mm256_fmadd_ps(p, v, p4);
  p = _mm256_fmadd_ps(p, v, p5);
  p = _mm256_fmadd_ps(p, v2, _mm256_add_ps(v, one));
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  __m256 out = _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
  out = _mm256_blendv_ps(out, inf, _mm256_cmp_ps(in, overflow, _CMP_GT_OQ));
  out = _mm256_blendv_ps(out, _mm256_setzero_ps(), _mm256_cmp_ps(in, underflow, _CMP_LT_OQ));
  return _mm256_blendv_ps(out, in, _mm256_cmp_ps(in, in, _CMP_UNORD_Q));
}

__attribute__((target("avx2,fma"))) void ExpAvx2(const float* x, float* y, int64_t count) {
  int64_t i = 0;
  for (; i + 8 <= count; i += 8) _mm256_storeu_ps(y + i, Exp8(_mm256_loadu_ps(x + i)));
  for (; i < count; i++) y[i] = std::exp(x[i]);
}

// Horizontal sum of 8 floats, and max.
__attribute__((target("avx2,fma"))) inline float Sum8(__m256 v) {
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
  return _mm_cvtss_f32(h);
}

__attribute__((target("avx2,fma"))) inline float Max8(__m256 v) {
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
  return _mm_cvtss_f32(h);
}

void ExpScalar(const float* x, float* y, int64_t count) {
  for (int64_t i = 0; i < count; i++) y[i] = std::exp(x[i]);
}

const bool kHasAvx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");

// Σ a[i]·b[i] in float32.
__attribute__((target("avx2,fma"))) inline float DotAvx2(const float* a, const float* b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  s0 = _mm256_add_ps(s0, s1);
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
  float sum = _mm_cvtss_f32(h);
  for (; i < n; i++) sum += a[i] * b[i];
  return sum;
}

inline float DotScalar(const float* a, const float* b, int64_t n) {
  float sum = 0;
  for (int64_t i = 0; i < n; i++) sum += a[i] * b[i];
  return sum;
}

// y += a·x (n floats).
__attribute__((target("avx2,fma"))) inline void AxpyAvx2(float* y, const float* x, float a,
                                                          int64_t n) {
  const __m256 scale = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(scale, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; i++) y[i] += a * x[i];
}

inline void AxpyScalar(float* y, const float* x, float a, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

constexpr float kGeluC = 0.7978845608028654f;  // √(2/π)
constexpr float kGeluK = 0.044715f;
constexpr int64_t kChunk = 1024;

__attribute__((target("avx2,fma"))) void GeluAvx2(const float* x, float* y, float* s, int64_t n) {
  const __m256 a = _mm256_set1_ps(-2.0f * kGeluC), b = _mm256_set1_ps(-2.0f * kGeluC * kGeluK);
  const __m256 one = _mm256_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    // −2u = v·(a + b·v²)
    const __m256 e = Exp8(_mm256_mul_ps(v, _mm256_fmadd_ps(b, _mm256_mul_ps(v, v), a)));
    const __m256 sigma = _mm256_div_ps(one, _mm256_add_ps(one, e));
    if (s) _mm256_storeu_ps(s + i, sigma);
    _mm256_storeu_ps(y + i, _mm256_mul_ps(v, sigma));
  }
  for (; i < n; i++) {
    const float v = x[i];
    const float sigma = 1.0f / (1.0f + std::exp(-2.0f * kGeluC * (v + kGeluK * v * v * v)));
    if (s) s[i] = sigma;
    y[i] = v * sigma;
  }
}

void GeluScalar(const float* x, float* y, float* s, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const float v = x[i];
    const float sigma = 1.0f / (1.0f + std::exp(-2.0f * kGeluC * (v + kGeluK * v * v * v)));
    if (s) s[i] = sigma;
    y[i] = v * sigma;
  }
}

__attribute__((always_inline)) inline void GeluGradBody(const float* dy, const float* x,
                                                        const float* s, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const float v = x[i], sigma = s[i];
    const float du = 2.0f * kGeluC * (1.0f + 3.0f * kGeluK * v * v);
    dx[i] = dy[i] * (sigma + v * sigma * (1.0f - sigma) * du);
  }
}

__attribute__((target("avx2,fma"))) void GeluGradAvx2(const float* dy, const float* x,
                                                       const float* s, float* dx, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f), twoC = _mm256_set1_ps(2.0f * kGeluC),
               threeK = _mm256_set1_ps(3.0f * kGeluK);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i), sigma = _mm256_loadu_ps(s + i);
    const __m256 du = _mm256_mul_ps(twoC, _mm256_fmadd_ps(threeK, _mm256_mul_ps(v, v), one));
    const __m256 slope = _mm256_fmadd_ps(
        _mm256_mul_ps(_mm256_mul_ps(v, sigma), _mm256_sub_ps(one, sigma)), du, sigma);
    _mm256_storeu_ps(dx + i, _mm256_mul_ps(_mm256_loadu_ps(dy + i), slope));
  }
  GeluGradBody(dy + i, x + i, s + i, dx + i, n - i);
}

void GeluGradScalar(const float* dy, const float* x, const float* s, float* dx, int64_t n) {
  GeluGradBody(dy, x, s, dx, n);
}

napi_value Gelu(napi_env env, napi_callback_info info) {
  Args args;
  if (!Parse(env, info, "gelu", 4, 0, args)) return nullptr;
  const int64_t* v = args.ints;
  if (!Inside(args, {v[0], v[1], v[2]}, v[3])) return Throw(env, "gelu's operands lie outside the heap");
  const float* x = At<const float>(args, v[0]);
  float* y = At<float>(args, v[1]);
  float* s = At<float>(args, v[2]);
  ForElements(v[3], [&](int64_t i0, int64_t i1) {
    (kHasAvx2 ? GeluAvx2 : GeluScalar)(x + i0, y + i0, s + i0, i1 - i0);
  });
  return nullptr;
}

napi_value GeluGrad(napi_env env, napi_callback_info info) {
  Args args;
  if (!Parse(env, info, "geluGrad", 5, 0, args)) return nullptr;
  const int64_t* v = args.ints;
  if (!Inside(args, {v[0], v[1], v[2], v[3]}, v[4]))
    return Throw(env, "geluGrad's operands lie outside the heap");
  const float* dy = At<const float>(args, v[0]);
  const float* x = At<const float>(args, v[1]);
  const float* s = At<const float>(args, v[2]);
  float* dx = At<float>(args, v[3]);
  ForElements(v[4], [&](int64_t i0, int64_t i1) {
    (kHasAvx2 ? GeluGradAvx2 : GeluGradScalar)(dy + i0, x + i0, s + i0, dx + i0, i1 - i0);
  });
  return nullptr;
}

__attribute__((target("avx2,fma"))) void CausalSoftmaxRowsAvx2(const float* s, float* p,
                                                               int64_t r0, int64_t r1,
                                                               int64_t t, int64_t tk) {
  for (int64_t r = r0; r < r1; r++) {
    const float* in = s + r * tk;
    float* out = p + r * tk;
    const int64_t valid = r % t + tk - t + 1, whole = valid & ~int64_t{7};
    __m256 top = _mm256_set1_ps(-INFINITY);
    for (int64_t j = 0; j < whole; j += 8) top = _mm256_max_ps(top, _mm256_loadu_ps(in + j));
    float max = Max8(top);
    for (int64_t j = whole; j < valid; j++) max = in[j] > max ? in[j] : max;
    const __m256 shift = _mm256_set1_ps(max);
    __m256 total = _mm256_setzero_ps();
    for (int64_t j = 0; j < whole; j += 8) {
      const __m256 e = Exp8(_mm256_sub_ps(_mm256_loadu_ps(in + j), shift));
      _mm256_storeu_ps(out + j, e);
      total = _mm256_add_ps(total, e);
    }
    double sum = Sum8(total);
    for (int64_t j = whole; j < valid; j++) sum += out[j] = std::exp(in[j] - max);
    const __m256 inverse = _mm256_set1_ps(static_cast<float>(1.0 / sum));
    for (int64_t j = 0; j < whole; j += 8)
      _mm256_storeu_ps(out + j, _mm256_mul_ps(_mm256_loadu_ps(out + j), inverse));
    for (int64_t j = whole; j < valid; j++) out[j] *= _mm256_cvtss_f32(inverse);
    for (int64_t j = valid; j < tk; j++) out[j] = 0;
  }
}

void CausalSoftmaxRowsScalar(const float* s, float* p, int64_t r0, int64_t r1, int64_t t,
                             int64_t tk) {
  for (int64_t r = r0; r < r1; r++) {
    const float* in = s + r * tk;
    float* out = p + r * tk;
    const int64_t valid = r % t + tk - t + 1;
    float max = -INFINITY;
    for (int64_t j = 0; j < valid; j++) max = in[j] > max ? in[j] : max;
    double sum = 0;
    for (int64_t j = 0; j < valid; j++) sum += out[j] = std::exp(in[j] - max);
    const float inverse = static_cast<float>(1.0 / sum);
    for (int64_t j = 0; j < valid; j++) out[j] *= inverse;
    for (int64_t j = valid; j < tk; j++) out[j] = 0;
  }
}

__attribute__((target("avx2,fma"))) void SoftmaxGradRowsAvx2(const float* dy, const float* p,
                                                             float* dx, int64_t r0, int64_t r1,
                                                             int64_t cols) {
  for (int64_t r = r0; r < r1; r++) {
    const float* g = dy + r * cols;
    const float* q = p + r * cols;
    float* out = dx + r * cols;
    const float dot = DotAvx2(q, g, cols);
    const __m256 d = _mm256_set1_ps(dot);
    int64_t j = 0;
    for (; j + 8 <= cols; j += 8)
      _mm256_storeu_ps(out + j, _mm256_mul_ps(_mm256_loadu_ps(q + j),
                                              _mm256_sub_ps(_mm256_loadu_ps(g + j), d)));
    for (; j < cols; j++) out[j] = q[j] * (g[j] - dot);
  }
}

void SoftmaxGradRowsScalar(const float* dy, const float* p, float* dx, int64_t r0, int64_t r1,
                           int64_t cols) {
  for (int64_t r = r0; r < r1; r++) {
    const float* g = dy + r * cols;
    const float* q = p + r * cols;
    float* out = dx + r * cols;
    const float dot = DotScalar(q, g, cols);
    for (int64_t j = 0; j < cols; j++) out[j] = q[j] * (g[j] - dot);
  }
}

napi_value Exp(napi_env env, napi_callback_info info) {
  Args args;
  if (!Parse(env, info, "exp", 3, 0, args)) return nullptr;
  const int64_t* v = args.ints;
  if (!Inside(args, {v[0], v[1]}, v[2])) return Throw(env, "exp's operands lie outside the heap");
  const float* x = At<const float>(args, v[0]);
  float* y = At<float>(args, v[1]);
  ForElements(v[2], [&](int64_t i0, int64_t i1) {
    (kHasAvx2 ? ExpAvx2 : ExpScalar)(x + i0, y + i0, i1 - i0);
  });
  return nullptr;
}

// One decode step's attention, rows [r0, r1): for each row r with starts[r] ≥ 0 and each query
// head h (key/value head h / (heads / kvHeads)):
//   s[t] = scale · K[r, kv, t] · q[r, h] for t in [starts[r], end)
//   out[r, h] = Σ_t softmax(s)[t] · V[r, kv, :, t]
// q rows are qRow floats apart (heads · headDim used); keys are [batch, kvHeads, capacity,
// headDim]; values likewise (`rowValues`) or transposed, [batch, kvHeads, headDim, capacity];
// out [batch, heads, headDim]; `scores` is scratch of `capacity` floats.
struct Attention {
  const float* q;
  int64_t qRow;
  const float* keys;
  const float* vals;
  float* out;
  const int32_t* starts;
  int64_t heads, kvHeads, hd, capacity, end;
  float scale;
  bool rowValues;
};

// The body, compiled twice (plainly, and for AVX2 with its dot products inlined).
template <float (*Dot)(const float*, const float*, int64_t),
          void (*Axpy)(float*, const float*, float, int64_t),
          void (*Exp)(const float*, float*, int64_t)>
__attribute__((always_inline)) inline void AttendBody(const Attention& a, int64_t r0, int64_t r1,
                                                      float* scores) {
  const int64_t group = a.heads / a.kvHeads, hd = a.hd, capacity = a.capacity;
  for (int64_t r = r0; r < r1; r++) {
    const int64_t start = a.starts[r];
    if (start < 0) continue;
    const int64_t count = a.end - start;
    for (int64_t h = 0; h < a.heads; h++) {
      const int64_t kv = h / group;
      const float* qh = a.q + r * a.qRow + h * hd;
      const float* k = a.keys + ((r * a.kvHeads + kv) * capacity + start) * hd;
      float max = -INFINITY;
      for (int64_t t = 0; t < count; t++) {
        const float s = Dot(k + t * hd, qh, hd) * a.scale;
        scores[t] = s;
        if (s > max) max = s;
      }
      for (int64_t t = 0; t < count; t++) scores[t] -= max;
      Exp(scores, scores, count);
      double sum = 0;
      for (int64_t t = 0; t < count; t++) sum += scores[t];
      const float inverse = static_cast<float>(1.0 / sum);
      for (int64_t t = 0; t < count; t++) scores[t] *= inverse;
      float* o = a.out + (r * a.heads + h) * hd;
      if (a.rowValues) {
        // Σ_t p[t]·V[t, :], streaming through the rows
        const float* v = a.vals + ((r * a.kvHeads + kv) * capacity + start) * hd;
        for (int64_t j = 0; j < hd; j++) o[j] = 0;
        for (int64_t t = 0; t < count; t++) Axpy(o, v + t * hd, scores[t], hd);
      } else {
        const float* vt = a.vals + (r * a.kvHeads + kv) * hd * capacity + start;
        for (int64_t j = 0; j < hd; j++) o[j] = Dot(vt + j * capacity, scores, count);
      }
    }
  }
}

__attribute__((target("avx2,fma"))) void AttendRowsAvx2(const Attention& a, int64_t r0,
                                                        int64_t r1, float* scores) {
  AttendBody<DotAvx2, AxpyAvx2, ExpAvx2>(a, r0, r1, scores);
}

void AttendRowsScalar(const Attention& a, int64_t r0, int64_t r1, float* scores) {
  AttendBody<DotScalar, AxpyScalar, ExpScalar>(a, r0, r1, scores);
}

void AttendRows(const Attention& a, int64_t r0, int64_t r1, float* scores) {
  (kHasAvx2 ? AttendRowsAvx2 : AttendRowsScalar)(a, r0, r1, scores);
}

// attend(heap, q, qRow, keys, vals, out, starts, batch, heads, kvHeads, headDim, capacity,
//        end, scale): `Attention` for every row (offsets in bytes, qRow in floats).
napi_value Attend(napi_env env, napi_callback_info info) {
  Args args;
  if (!Parse(env, info, "attend", 12, 1, args)) return nullptr;
  const int64_t* v = args.ints;
  const int64_t qOff = v[0], qRow = v[1], kOff = v[2], vOff = v[3], oOff = v[4], sOff = v[5];
  const int64_t batch = v[6], heads = v[7], kvHeads = v[8], hd = v[9], capacity = v[10],
                end = v[11];
  const bool shape = batch > 0 && heads > 0 && kvHeads > 0 && heads % kvHeads == 0 && hd > 0 &&
                     end <= capacity && qRow >= heads * hd;
  if (!shape) return Throw(env, "attend's shape is inconsistent");
  const int64_t cache = batch * kvHeads * capacity * hd;
  if (!Inside(args, {qOff}, (batch - 1) * qRow + heads * hd) || !Inside(args, {kOff, vOff}, cache) ||
      !Inside(args, {oOff}, batch * heads * hd) || !Inside(args, {sOff}, batch))
    return Throw(env, "attend's operands lie outside the heap");
  const Attention a{At<const float>(args, qOff), qRow, At<const float>(args, kOff),
                    At<const float>(args, vOff), At<float>(args, oOff),
                    At<const int32_t>(args, sOff), heads, kvHeads, hd, capacity, end,
                    static_cast<float>(args.numbers[0]), false};
  for (int64_t r = 0; r < batch; r++)
    if (a.starts[r] >= end) return Throw(env, "attend: a row starts at or after the end");
  std::vector<float> scores(capacity);
  AttendRows(a, 0, batch, scores.data());
  return nullptr;
}

// attention(heap, q, k, v, y, p, batch, time, heads, kvHeads, headDim, scale): causal
// self-attention for training, on q and y as [batch·time, heads·headDim] rows and k, v as
// [batch·time, kvHeads·headDim] (no head transposes; query head h reads key/value head
// h / (heads / kvHeads)): per sequence and query head, P = softmax(scale·Q·Kᵀ) with query i
// seeing keys ≤ i (saved in p, [batch, heads, time, time]) and Y = P·V.
// attentionGrad(heap, dy, q, k, v, p, dq, dk, dv, batch, time, heads, kvHeads, headDim, scale):
// dP = dY·Vᵀ, dS = P ⊙ (dP − Σ dP ⊙ P), dQ = scale·dS·K, and summed over the query heads that
// share a key/value head, dK = scale·dSᵀ·Q and dV = Pᵀ·dY. Sequences × heads (forward) or
// × key/value heads (backward) split across the pool.
struct HeadView {
  int64_t time, heads, kvHeads, hd;
  // the [time, headDim] block of sequence b's query head h in a [batch·time, heads·headDim]
  // array (rows heads·headDim apart), and of its key/value head in a [batch·time,
  // kvHeads·headDim] one
  template <typename T>
  T* Query(T* base, int64_t b, int64_t h) const {
    return base + b * time * heads * hd + h * hd;
  }
  template <typename T>
  T* KeyValue(T* base, int64_t b, int64_t h) const {
    return base + b * time * kvHeads * hd + h / (heads / kvHeads) * hd;
  }
};

void Sgemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
           int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, float beta = 0.0f) {
  cblas_sgemm(kRowMajor, transA ? kTrans : kNoTrans, transB ? kTrans : kNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a,
              static_cast<int>(lda), b, static_cast<int>(ldb), beta, c, static_cast<int>(ldc));
}

// Reads attention's or its gradient's arguments: byte offsets, one per letter of `kinds` (q: a
// [batch·time, heads·headDim] array; k: [batch·time, kvHeads·headDim]; p: [batch, heads, time,
// time]), then batch, time, heads, kvHeads, headDim and the scale; false, with an error thrown,
// when one is bad.
bool ParseAttention(napi_env env, napi_callback_info info, const std::string& name,
                    const std::string& kinds, Args& args, HeadView& view, int64_t& batch) {
  const int offsets = static_cast<int>(kinds.size());
  if (!Parse(env, info, name, offsets + 5, 1, args)) return false;
  const int64_t* shape = args.ints + offsets;
  batch = shape[0];
  view = {shape[1], shape[2], shape[3], shape[4]};
  if (batch < 1 || view.time < 1 || view.heads < 1 || view.kvHeads < 1 || view.hd < 1 ||
      view.heads % view.kvHeads != 0) {
    Throw(env, name + "'s shape is inconsistent");
    return false;
  }
  const int64_t rows = batch * view.time;
  for (int i = 0; i < offsets; i++) {
    const int64_t floats = kinds[i] == 'p'   ? batch * view.heads * view.time * view.time
                           : kinds[i] == 'q' ? rows * view.heads * view.hd
                                             : rows * view.kvHeads * view.hd;
    if (!Inside(args, {args.ints[i]}, floats)) {
      Throw(env, name + "'s operands lie outside the heap");
      return false;
    }
  }
  return true;
}

napi_value CausalAttention(napi_env env, napi_callback_info info) {
  Args args;
  HeadView view;
  int64_t batch;
  if (!ParseAttention(env, info, "attention", "qkkqp", args, view, batch)) return nullptr;
  const int64_t* v = args.ints;
  const int64_t time = view.time, hd = view.hd, heads = view.heads, items = batch * heads;
  const int64_t qRow = heads * hd, kvRow = view.kvHeads * hd;
  const float* q = At<const float>(args, v[0]);
  const float* k = At<const float>(args, v[1]);
  const float* vv = At<const float>(args, v[2]);
  float* y = At<float>(args, v[3]);
  float* p = At<float>(args, v[4]);
  const float scale = static_cast<float>(args.numbers[0]);
  ForRows(items, items * time * time, [&](int64_t i0, int64_t i1) {
    for (int64_t item = i0; item < i1; item++) {
      const int64_t b = item / heads, h = item % heads;
      float* pi = p + item * time * time;
      Sgemm(false, true, time, time, hd, scale, view.Query(q, b, h), qRow,
            view.KeyValue(k, b, h), kvRow, pi, time);
      (kHasAvx2 ? CausalSoftmaxRowsAvx2 : CausalSoftmaxRowsScalar)(pi, pi, 0, time, time, time);
      Sgemm(false, false, time, hd, time, 1.0f, pi, time, view.KeyValue(vv, b, h), kvRow,
            view.Query(y, b, h), qRow);
    }
  });
  return nullptr;
}

napi_value CausalAttentionGrad(napi_env env, napi_callback_info info) {
  Args args;
  HeadView view;
  int64_t batch;
  if (!ParseAttention(env, info, "attentionGrad", "qqkkpqkk", args, view, batch)) return nullptr;
  const int64_t* v = args.ints;
  const int64_t time = view.time, hd = view.hd, heads = view.heads, kvHeads = view.kvHeads;
  const int64_t group = heads / kvHeads, qRow = heads * hd, kvRow = kvHeads * hd;
  const float* dy = At<const float>(args, v[0]);
  const float* q = At<const float>(args, v[1]);
  const float* k = At<const float>(args, v[2]);
  const float* vv = At<const float>(args, v[3]);
  const float* p = At<const float>(args, v[4]);
  float* dq = At<float>(args, v[5]);
  float* dk = At<float>(args, v[6]);
  float* dv = At<float>(args, v[7]);
  const float scale = static_cast<float>(args.numbers[0]);
  const int64_t items = batch * kvHeads;
  ForRows(items, items * group * time * time, [&](int64_t i0, int64_t i1) {
    std::vector<float> ds(time * time);
    for (int64_t item = i0; item < i1; item++) {
      const int64_t b = item / kvHeads;
      for (int64_t g = 0; g < group; g++) {
        const int64_t h = item % kvHeads * group + g;
        const float* pi = p + (b * heads + h) * time * time;
        const float* dyi = view.Query(dy, b, h);
        // the key/value head's gradients: written by its first query head, then summed
        const float beta = g == 0 ? 0.0f : 1.0f;
        Sgemm(false, true, time, time, hd, 1.0f, dyi, qRow, view.KeyValue(vv, b, h), kvRow,
              ds.data(), time);
        (kHasAvx2 ? SoftmaxGradRowsAvx2 : SoftmaxGradRowsScalar)(ds.data(), pi, ds.data(), 0,
                                                                  time, time);
        Sgemm(false, false, time, hd, time, scale, ds.data(), time, view.KeyValue(k, b, h), kvRow,
              view.Query(dq, b, h), qRow);
        Sgemm(true, false, time, hd, time, scale, ds.data(), time, view.Query(q, b, h), qRow,
              view.KeyValue(dk, b, h), kvRow, beta);
        Sgemm(true, false, time, hd, time, 1.0f, pi, time, dyi, qRow, view.KeyValue(dv, b, h),
              kvRow, beta);
      }
    }
  });
  return nullptr;
}

napi_value CausalSoftmax(napi_env env, napi_callback_info info) {
  Args args;
  if (!Parse(env, info, "causalSoftmax", 5, 0, args)) return nullptr;
  const int64_t* v = args.ints;
  const int64_t rows = v[2], t = v[3], tk = v[4];
  if (t == 0 || tk < t || rows % t != 0) return Throw(env, "causalSoftmax's shape is inconsistent");
  if (!Inside(args, {v[0], v[1]}, rows * tk))
    return Throw(env, "causalSoftmax's operands lie outside the heap");
  const auto* s = At<const float>(args, v[0]);
  auto* p = At<float>(args, v[1]);
  ForRows(rows, rows * tk, [&](int64_t r0, int64_t r1) {
    (kHasAvx2 ? CausalSoftmaxRowsAvx2 : CausalSoftmaxRowsScalar)(s, p, r0, r1, t, tk);
  });
  return nullptr;
}

napi_value SoftmaxGrad(napi_env env, napi_callback_info info) {
  Args args;
  if (!Parse(env, info, "softmaxGrad", 5, 0, args)) return nullptr;
  const int64_t* v = args.ints;
  const int64_t rows = v[3], cols = v[4];
  if (!Inside(args, {v[0], v[1], v[2]}, rows * cols))
    return Throw(env, "softmaxGrad's operands lie outside the heap");
  const auto* dy = At<const float>(args, v[0]);
  const auto* p = At<const float>(args, v[1]);
  auto* dx = At<float>(args, v[2]);
  ForRows(rows, rows * cols, [&](int64_t r0, int64_t r1) {
    (kHasAvx2 ? SoftmaxGradRowsAvx2 : SoftmaxGradRowsScalar)(dy, p, dx, r0, r1, cols);
  });
  return nullptr;
}

// One body, compiled twice: plainly, and inside an AVX2+FMA function that lets GCC vectorise it.
__attribute__((always_inline)) inline void AdamWBody(const float* x, const float* m,
                                                     const float* v, const float* g, float* x2,
                                                     float* m2, float* v2, int64_t n,
                                                     const double* c) {
  const float beta1 = c[0], beta2 = c[1], correction1 = c[2], correction2 = c[3], epsilon = c[4],
              lr = c[5], decay = c[6];
  for (int64_t i = 0; i < n; i++) {
    const float mi = m[i] * beta1 + g[i] * (1.0f - beta1);
    const float vi = v[i] * beta2 + g[i] * g[i] * (1.0f - beta2);
    m2[i] = mi;
    v2[i] = vi;
    x2[i] = x[i] - lr * (mi / correction1) / (std::sqrt(vi / correction2) + epsilon) - decay * x[i];
  }
}

__attribute__((target("avx2,fma"))) void AdamWAvx2(const float* x, const float* m, const float* v,
                                                    const float* g, float* x2, float* m2, float* v2,
                                                    int64_t n, const double* c) {
  AdamWBody(x, m, v, g, x2, m2, v2, n, c);
}

void AdamWScalar(const float* x, const float* m, const float* v, const float* g, float* x2,
                 float* m2, float* v2, int64_t n, const double* c) {
  AdamWBody(x, m, v, g, x2, m2, v2, n, c);
}

napi_value AdamW(napi_env env, napi_callback_info info) {
  Args args;
  if (!Parse(env, info, "adamw", 8, 7, args)) return nullptr;
  const int64_t* v = args.ints;
  if (!Inside(args, {v[0], v[1], v[2], v[3], v[4], v[5], v[6]}, v[7]))
    return Throw(env, "adamw's operands lie outside the heap");
  (kHasAvx2 ? AdamWAvx2 : AdamWScalar)(At<const float>(args, v[0]), At<const float>(args, v[1]), At<const float>(args, v[2]),
              At<const float>(args, v[3]), At<float>(args, v[4]), At<float>(args, v[5]),
              At<float>(args, v[6]), v[7], args.numbers);
  return nullptr;
}

// Training LayerNorm, rows [r0, r1): the sums in float vectors (8 lanes, then in double) under
// AVX2, in double plainly.
__attribute__((target("avx2,fma"))) void LayerNormRowsAvx2(const float* x, const float* gamma,
                                                            const float* beta, float* y,
                                                            float* xhat, float* rstd, int64_t r0,
                                                            int64_t r1, int64_t cols,
                                                            double epsilon) {
  const int64_t whole = cols & ~int64_t{7};
  for (int64_t r = r0; r < r1; r++) {
    const float* in = x + r * cols;
    __m256 total = _mm256_setzero_ps();
    for (int64_t c = 0; c < whole; c += 8) total = _mm256_add_ps(total, _mm256_loadu_ps(in + c));
    double sum = Sum8(total);
    for (int64_t c = whole; c < cols; c++) sum += in[c];
    const float mean = static_cast<float>(sum / cols);
    const __m256 m = _mm256_set1_ps(mean);
    __m256 squares8 = _mm256_setzero_ps();
    for (int64_t c = 0; c < whole; c += 8) {
      const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(in + c), m);
      squares8 = _mm256_fmadd_ps(d, d, squares8);
    }
    double squares = Sum8(squares8);
    for (int64_t c = whole; c < cols; c++) squares += (in[c] - mean) * (in[c] - mean);
    const float inverse = static_cast<float>(1.0 / std::sqrt(squares / cols + epsilon));
    rstd[r] = inverse;
    float* h = xhat + r * cols;
    float* out = y + r * cols;
    const __m256 scale = _mm256_set1_ps(inverse);
    for (int64_t c = 0; c < whole; c += 8) {
      const __m256 hc = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(in + c), m), scale);
      _mm256_storeu_ps(h + c, hc);
      const __m256 g = _mm256_mul_ps(hc, _mm256_loadu_ps(gamma + c));
      _mm256_storeu_ps(out + c, beta ? _mm256_add_ps(g, _mm256_loadu_ps(beta + c)) : g);
    }
    for (int64_t c = whole; c < cols; c++) {
      h[c] = (in[c] - mean) * inverse;
      out[c] = beta ? h[c] * gamma[c] + beta[c] : h[c] * gamma[c];
    }
  }
}

void LayerNormRowsScalar(const float* x, const float* gamma, const float* beta, float* y,
                         float* xhat, float* rstd, int64_t r0, int64_t r1, int64_t cols,
                         double epsilon) {
  for (int64_t r = r0; r < r1; r++) {
    const float* in = x + r * cols;
    double sum = 0;
    for (int64_t c = 0; c < cols; c++) sum += in[c];
    const float mean = static_cast<float>(sum / cols);
    double squares = 0;
    for (int64_t c = 0; c < cols; c++) squares += (in[c] - mean) * (in[c] - mean);
    const float inverse = static_cast<float>(1.0 / std::sqrt(squares / cols + epsilon));
    rstd[r] = inverse;
    float* h = xhat + r * cols;
    float* out = y + r * cols;
    for (int64_t c = 0; c < cols; c++) {
      h[c] = (in[c] - mean) * inverse;
      out[c] = beta ? h[c] * gamma[c] + beta[c] : h[c] * gamma[c];
    }
  }
}

__attribute__((target("avx2,fma"))) void LayerNormGradRowsAvx2(const float* dy, const float* gamma,
                                                                const float* xhat,
                                                                const float* rstd, float* dx,
                                                                int64_t r0, int64_t r1,
                                                                int64_t cols) {
  const int64_t whole = cols & ~int64_t{7};
  for (int64_t r = r0; r < r1; r++) {
    const float* g = dy + r * cols;
    const float* h = xhat + r * cols;
    __m256 d8 = _mm256_setzero_ps(), dx8 = _mm256_setzero_ps();
    for (int64_t c = 0; c < whole; c += 8) {
      const __m256 d = _mm256_mul_ps(_mm256_loadu_ps(g + c), _mm256_loadu_ps(gamma + c));
      d8 = _mm256_add_ps(d8, d);
      dx8 = _mm256_fmadd_ps(d, _mm256_loadu_ps(h + c), dx8);
    }
    double meanD = Sum8(d8), meanDX = Sum8(dx8);
    for (int64_t c = whole; c < cols; c++) {
      const float d = g[c] * gamma[c];
      meanD += d;
      meanDX += d * h[c];
    }
    const float a = static_cast<float>(meanD / cols), b = static_cast<float>(meanDX / cols);
    float* out = dx + r * cols;
    const __m256 a8 = _mm256_set1_ps(a), b8 = _mm256_set1_ps(b), s8 = _mm256_set1_ps(rstd[r]);
    for (int64_t c = 0; c < whole; c += 8) {
      const __m256 d = _mm256_mul_ps(_mm256_loadu_ps(g + c), _mm256_loadu_ps(gamma + c));
      const __m256 v = _mm256_sub_ps(_mm256_sub_ps(d, a8), _mm256_mul_ps(_mm256_loadu_ps(h + c), b8));
      _mm256_storeu_ps(out + c, _mm256_mul_ps(v, s8));
    }
    for (int64_t c = whole; c < cols; c++) out[c] = (g[c] * gamma[c] - a - h[c] * b) * rstd[r];
  }
}

void LayerNormGradRowsScalar(const float* dy, const float* gamma, const float* xhat,
                             const float* rstd, float* dx, int64_t r0, int64_t r1, int64_t cols) {
  for (int64_t r = r0; r < r1; r++) {
    const float* g = dy + r * cols;
    const float* h = xhat + r * cols;
    double meanD = 0, meanDX = 0;
    for (int64_t c = 0; c < cols; c++) {
      const float d = g[c] * gamma[c];
      meanD += d;
      meanDX += d * h[c];
    }
    const float a = static_cast<float>(meanD / cols), b = static_cast<float>(meanDX / cols);
    float* out = dx + r * cols;
    for (int64_t c = 0; c < cols; c++) out[c] = (g[c] * gamma[c] - a - h[c] * b) * rstd[r];
  }
}

napi_value LayerNorm(napi_env env, napi_callback_info info) {
  Args args;
  if (!Parse(env, info, "layerNorm", 9, 1, args)) return nullptr;
  const int64_t* v = args.ints;
  const int64_t rows = v[6], cols = v[7];
  const bool hasBeta = v[8] != 0;
  if (cols == 0 || !Inside(args, {v[0], v[3], v[4]}, rows * cols) ||
      !Inside(args, {v[1]}, cols) || (hasBeta && !Inside(args, {v[2]}, cols)) ||
      !Inside(args, {v[5]}, rows))
    return Throw(env, "layerNorm's operands lie outside the heap");
  const float* x = At<const float>(args, v[0]);
  const float* gamma = At<const float>(args, v[1]);
  const float* beta = hasBeta ? At<const float>(args, v[2]) : nullptr;
  float* y = At<float>(args, v[3]);
  float* xhat = At<float>(args, v[4]);
  float* rstd = At<float>(args, v[5]);
  const double epsilon = args.numbers[0];
  ForRows(rows, rows * cols, [&](int64_t r0, int64_t r1) {
    (kHasAvx2 ? LayerNormRowsAvx2 : LayerNormRowsScalar)(x, gamma, beta, y, xhat, rstd, r0, r1,
                                                         cols, epsilon);
  });
  return nullptr;
}

napi_value LayerNormGrad(napi_env env, napi_callback_info info) {
  Args args;
  if (!Parse(env, info, "layerNormGrad", 7, 0, args)) return nullptr;
  const int64_t* v = args.ints;
  const int64_t rows = v[5], cols = v[6];
  if (cols == 0 || !Inside(args, {v[0], v[2], v[4]}, rows * cols) || !Inside(args, {v[1]}, cols) ||
      !Inside(args, {v[3]}, rows))
    return Throw(env, "layerNormGrad's operands lie outside the heap");
  const float* dy = At<const float>(args, v[0]);
  const float* gamma = At<const float>(args, v[1]);
  const float* xhat = At<const float>(args, v[2]);
  const float* rstd = At<const float>(args, v[3]);
  float* dx = At<float>(args, v[4]);
  ForRows(rows, rows * cols, [&](int64_t r0, int64_t r1) {
    (kHasAvx2 ? LayerNormGradRowsAvx2 : LayerNormGradRowsScalar)(dy, gamma, xhat, rstd, dx, r0,
                                                                 r1, cols);
  });
  return nullptr;
}

// decodeStep(heap, plan, slot): one token per row through a whole GPT-2 model for the JS
// decode step (src/fast-decode.ts builds `plan`, a Float64Array; its layout is kPlan* below):
// embeddings, then per block LayerNorm, the q/k/v projection, the new key and value written at
// cache slot `slot` (keys and values both [batch, heads, capacity, headDim]), attention over [starts[r], slot], the output projection and residual,
// LayerNorm, the MLP with tanh-GELU and residual; the final LayerNorm and the head's logits.
// Linear layers carry an optional bias and LoRA adapter (y += s·(x·Aᵀ)·Bᵀ). Rows are
// independent throughout, so a large enough batch is split across the pool by rows: one
// wake-up per token, each thread running its rows' products on OpenBLAS alone.
enum : int {
  kPlanBatch, kPlanWidth, kPlanHeads, kPlanHeadDim, kPlanCapacity, kPlanVocab, kPlanInner,
  kPlanLayers, kPlanRank, kPlanEpsilon,
  kPlanX, kPlanH, kPlanQkv, kPlanAtt, kPlanProj, kPlanHidden, kPlanLow, kPlanUpdate, kPlanLogits,
  kPlanStarts, kPlanIds, kPlanPositions, kPlanWte, kPlanWpe, kPlanNormGain, kPlanNormBias,
  kPlanHead, kPlanHeader,
  // per block, after the header: norm 1 gain, bias; norm 2 gain, bias; keys; values; then the
  // q/k/v, output, MLP up and MLP down layers, each (weight, bias, A, B, rank, scale)
  kPlanBlockNorms = 4, kPlanLinear = 6, kPlanBlock = 6 + 4 * 6,
};
// The step splits rows across the pool only with at least this many rows per thread and this
// many multiply-adds in all (each thread reads every weight). Measured on forge-tiny's shape
// (2-core AVX2 VM, ms a step): batch 8 on one thread 0.35, split in two 0.17; batch 32 on one
// 1.45–1.6, split 0.76–0.87. Before the pool spun, a split of batch 8 took 0.43.
constexpr int64_t kStepRowsPerThread = 4;
constexpr double kStepParallelMacs = 4194304;

struct StepLinear {
  const float* w;     // packed (PackedTimes)
  const float* bias;  // [out] or null
  const float* a;     // LoRA A [r, in] or null
  const float* b;     // LoRA B [out, r]
  int64_t r, in, out;
  float scale;
};

struct StepBlock {
  const float *norm1, *bias1, *norm2, *bias2;
  float *keys, *vals;
  StepLinear qkv, o, fc, down;
};

struct Step {
  int64_t batch, C, heads, hd, capacity, V, inner, slot;
  double epsilon;
  float *x, *h, *qkv, *att, *proj, *hidden, *low, *update, *logits;
  float* rstd;  // scratch, [batch]
  int32_t *starts;
  const int32_t *ids, *positions;
  const float *wte, *wpe, *normGain, *normBias;
  const float* head;  // packed: [C, V]
  std::vector<StepBlock> blocks;
};

// The native step's weights are packed in panels of kPanel outputs, each [in, kPanel] (zero
// past the last output), so its products read them in order and pack nothing per call (at a
// decode step's few rows OpenBLAS spent as long packing the weights as multiplying).
constexpr int64_t kPanel = 16;

int64_t PackedFloats(int64_t in, int64_t out) { return (out + kPanel - 1) / kPanel * kPanel * in; }

// y[r, c] = x[r, :] · panel[:, c] (+ bias[c]) for R rows and the panel's first `cols` outputs:
// R × 16 sums in 2R registers, one pass over the panel.
template <int R>
__attribute__((target("avx2,fma"))) inline void PanelAvx2(const float* x, int64_t in,
                                                           const float* panel, const float* bias,
                                                           float* y, int64_t out, int64_t cols) {
  __m256 acc[R][2];
#pragma GCC unroll 8
  for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int64_t i = 0; i < in; i++) {
    const __m256 w0 = _mm256_loadu_ps(panel + i * kPanel);
    const __m256 w1 = _mm256_loadu_ps(panel + i * kPanel + 8);
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
      const __m256 v = _mm256_broadcast_ss(x + r * in + i);
      acc[r][0] = _mm256_fmadd_ps(v, w0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(v, w1, acc[r][1]);
    }
  }
  float tail[kPanel];
#pragma GCC unroll 8
  for (int r = 0; r < R; r++) {
    if (bias && cols == kPanel) {
      acc[r][0] = _mm256_add_ps(acc[r][0], _mm256_loadu_ps(bias));
      acc[r][1] = _mm256_add_ps(acc[r][1], _mm256_loadu_ps(bias + 8));
    }
    float* row = y + r * out;
    if (cols == kPanel) {
      _mm256_storeu_ps(row, acc[r][0]);
      _mm256_storeu_ps(row + 8, acc[r][1]);
    } else {
      _mm256_storeu_ps(tail, acc[r][0]);
      _mm256_storeu_ps(tail + 8, acc[r][1]);
      for (int64_t c = 0; c < cols; c++) row[c] = bias ? tail[c] + bias[c] : tail[c];
    }
  }
}

__attribute__((target("avx2,fma"))) void PackedTimesAvx2(const float* x, const float* packed,
                                                          const float* bias, float* y,
                                                          int64_t rows, int64_t in, int64_t out) {
  for (int64_t c0 = 0; c0 < out; c0 += kPanel) {
    const float* panel = packed + c0 * in;
    const float* b = bias ? bias + c0 : nullptr;
    const int64_t cols = out - c0 < kPanel ? out - c0 : kPanel;
    int64_t r = 0;
    for (; r + 6 <= rows; r += 6) PanelAvx2<6>(x + r * in, in, panel, b, y + r * out + c0, out, cols);
    const float* xr = x + r * in;
    float* yr = y + r * out + c0;
    switch (rows - r) {
      case 5: PanelAvx2<5>(xr, in, panel, b, yr, out, cols); break;
      case 4: PanelAvx2<4>(xr, in, panel, b, yr, out, cols); break;
      case 3: PanelAvx2<3>(xr, in, panel, b, yr, out, cols); break;
      case 2: PanelAvx2<2>(xr, in, panel, b, yr, out, cols); break;
      case 1: PanelAvx2<1>(xr, in, panel, b, yr, out, cols); break;
      default: break;
    }
  }
}

void PackedTimesScalar(const float* x, const float* packed, const float* bias, float* y,
                       int64_t rows, int64_t in, int64_t out) {
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < out; c++) {
      const float* column = packed + c / kPanel * kPanel * in + c % kPanel;
      float sum = 0;
      for (int64_t i = 0; i < in; i++) sum += x[r * in + i] * column[i * kPanel];
      y[r * out + c] = bias ? sum + bias[c] : sum;
    }
}

// y [rows, out] = x [rows, in] · W (+ bias), W packed, on the calling thread.
void PackedTimes(const float* x, const float* packed, const float* bias, float* y, int64_t rows,
                 int64_t in, int64_t out) {
  (kHasAvx2 ? PackedTimesAvx2 : PackedTimesScalar)(x, packed, bias, y, rows, in, out);
}

// rows × out = x [rows, in] · wᵀ, on the calling thread.
void RowsTimesT(const float* x, const float* w, float* y, int64_t rows, int64_t in, int64_t out) {
  if (in == 0) {
    for (int64_t i = 0; i < rows * out; i++) y[i] = 0;
    return;
  }
  cblas_sgemm(kRowMajor, kNoTrans, kTrans, static_cast<int>(rows), static_cast<int>(out),
              static_cast<int>(in), 1.0f, x, static_cast<int>(in), w, static_cast<int>(in), 0.0f,
              y, static_cast<int>(out));
}

// Rows [r0, r1) of y = x·Wᵀ (+ bias) (+ s·(x·Aᵀ)·Bᵀ), as the JS step computes it.
void StepLinearRows(const Step& s, const StepLinear& l, const float* x, float* y, int64_t r0,
                    int64_t r1) {
  const int64_t rows = r1 - r0;
  PackedTimes(x + r0 * l.in, l.w, l.bias, y + r0 * l.out, rows, l.in, l.out);
  if (!l.a) return;
  float* low = s.low + r0 * l.r;
  float* update = s.update + r0 * l.out;
  RowsTimesT(x + r0 * l.in, l.a, low, rows, l.in, l.r);
  RowsTimesT(low, l.b, update, rows, l.r, l.out);
  for (int64_t i = 0; i < rows * l.out; i++) y[r0 * l.out + i] += update[i] * l.scale;
}

// LayerNorm of rows [r0, r1): the training kernel's rows, x̂ written over y before y itself,
// 1/σ into the step's scratch.
void StepNormRows(const Step& s, const float* x, float* y, const float* gain, const float* bias,
                  int64_t r0, int64_t r1) {
  (kHasAvx2 ? LayerNormRowsAvx2 : LayerNormRowsScalar)(x, gain, bias, y, y, s.rstd, r0, r1, s.C,
                                                       s.epsilon);
}

void StepRows(const Step& s, int64_t r0, int64_t r1, float* scores) {
  const int64_t C = s.C, rows = r1 - r0;
  for (int64_t r = r0; r < r1; r++) {
    const float* te = s.wte + s.ids[r] * C;
    const float* pe = s.wpe + s.positions[r] * C;
    for (int64_t c = 0; c < C; c++) s.x[r * C + c] = te[c] + pe[c];
  }
  for (const StepBlock& b : s.blocks) {
    StepNormRows(s, s.x, s.h, b.norm1, b.bias1, r0, r1);
    StepLinearRows(s, b.qkv, s.h, s.qkv, r0, r1);
    for (int64_t r = r0; r < r1; r++)
      for (int64_t head = 0; head < s.heads; head++) {
        const float* k = s.qkv + r * 3 * C + C + head * s.hd;
        const float* v = k + C;
        const int64_t at = ((r * s.heads + head) * s.capacity + s.slot) * s.hd;
        for (int64_t j = 0; j < s.hd; j++) {
          b.keys[at + j] = k[j];
          b.vals[at + j] = v[j];
        }
      }
    const Attention a{s.qkv,      3 * C,      b.keys,      b.vals,
                      s.att,      s.starts,   s.heads,     s.heads,
                      s.hd,       s.capacity, s.slot + 1,  static_cast<float>(1 / std::sqrt(double(s.hd))),
                      true};
    AttendRows(a, r0, r1, scores);
    StepLinearRows(s, b.o, s.att, s.proj, r0, r1);
    for (int64_t i = r0 * C; i < r1 * C; i++) s.x[i] += s.proj[i];
    StepNormRows(s, s.x, s.h, b.norm2, b.bias2, r0, r1);
    StepLinearRows(s, b.fc, s.h, s.hidden, r0, r1);
    float* hidden = s.hidden + r0 * s.inner;
    (kHasAvx2 ? GeluAvx2 : GeluScalar)(hidden, hidden, nullptr, rows * s.inner);
    StepLinearRows(s, b.down, s.hidden, s.proj, r0, r1);
    for (int64_t i = r0 * C; i < r1 * C; i++) s.x[i] += s.proj[i];
  }
  StepNormRows(s, s.x, s.h, s.normGain, s.normBias, r0, r1);
  PackedTimes(s.h + r0 * C, s.head, nullptr, s.logits + r0 * s.V, rows, C, s.V);
}

napi_value DecodeStep(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  size_t argc = 3;
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok || argc != 3)
    return Throw(env, "decodeStep takes 3 arguments");
  void* heapData = nullptr;
  void* planData = nullptr;
  size_t heapBytes = 0, planLength = 0;
  napi_typedarray_type type;
  if (napi_get_typedarray_info(env, argv[0], &type, &heapBytes, &heapData, nullptr, nullptr) !=
          napi_ok ||
      type != napi_uint8_array)
    return Throw(env, "decodeStep's heap must be a Uint8Array");
  if (napi_get_typedarray_info(env, argv[1], &type, &planLength, &planData, nullptr, nullptr) !=
          napi_ok ||
      type != napi_float64_array)
    return Throw(env, "decodeStep's plan must be a Float64Array");
  int64_t slot = 0;
  if (napi_get_value_int64(env, argv[2], &slot) != napi_ok || slot < 0)
    return Throw(env, "decodeStep's slot must be a non-negative integer");
  const double* plan = static_cast<const double*>(planData);
  Args args;
  args.heap = static_cast<uint8_t*>(heapData);
  args.bytes = static_cast<int64_t>(heapBytes);
  if (planLength < kPlanHeader) return Throw(env, "decodeStep's plan is too short");
  auto count = [&](int i) { return static_cast<int64_t>(plan[i]); };
  for (int i = 0; i < kPlanHeader; i++)
    if (i != kPlanEpsilon && (plan[i] != std::floor(plan[i]) || plan[i] < -1))
      return Throw(env, "decodeStep's plan holds a bad offset or size at " + std::to_string(i));
  Step s;
  s.batch = count(kPlanBatch), s.C = count(kPlanWidth), s.heads = count(kPlanHeads);
  s.hd = count(kPlanHeadDim), s.capacity = count(kPlanCapacity), s.V = count(kPlanVocab);
  s.inner = count(kPlanInner), s.slot = slot, s.epsilon = plan[kPlanEpsilon];
  const int64_t layers = count(kPlanLayers), rank = count(kPlanRank), B = s.batch, C = s.C;
  if (B < 1 || s.heads < 1 || s.hd < 1 || C != s.heads * s.hd || s.V < 1 || s.inner < 1 ||
      layers < 0 || rank < 0 || planLength != static_cast<size_t>(kPlanHeader + layers * kPlanBlock))
    return Throw(env, "decodeStep's plan has an inconsistent shape");
  if (slot >= s.capacity) return Throw(env, "decodeStep: the cache is full");
  bool inside = true;
  // A float array of `floats` at the plan's entry i (−1: none, where `optional`).
  auto floats = [&](int64_t i, int64_t n, bool optional = false) -> float* {
    if (optional && plan[i] == -1) return nullptr;
    const int64_t offset = static_cast<int64_t>(plan[i]);
    if (plan[i] != std::floor(plan[i]) || offset < 0 || !Inside(args, {offset}, n)) {
      inside = false;
      return nullptr;
    }
    return At<float>(args, offset);
  };
  const int64_t widest = std::max<int64_t>({3 * C, s.inner});
  s.x = floats(kPlanX, B * C), s.h = floats(kPlanH, B * C), s.qkv = floats(kPlanQkv, B * 3 * C);
  s.att = floats(kPlanAtt, B * C), s.proj = floats(kPlanProj, B * C);
  s.hidden = floats(kPlanHidden, B * s.inner), s.low = floats(kPlanLow, B * rank);
  s.update = floats(kPlanUpdate, rank > 0 ? B * widest : 0), s.logits = floats(kPlanLogits, B * s.V);
  s.starts = reinterpret_cast<int32_t*>(floats(kPlanStarts, B));
  s.ids = reinterpret_cast<const int32_t*>(floats(kPlanIds, B));
  s.positions = reinterpret_cast<const int32_t*>(floats(kPlanPositions, B));
  s.wte = floats(kPlanWte, s.V * C), s.wpe = floats(kPlanWpe, s.capacity * C);
  s.normGain = floats(kPlanNormGain, C), s.normBias = floats(kPlanNormBias, C, true);
  s.head = floats(kPlanHead, PackedFloats(C, s.V));
  const int64_t cache = B * s.heads * s.capacity * s.hd;
  double macs = static_cast<double>(C) * s.V;
  for (int64_t l = 0; l < layers && inside; l++) {
    const double* p = plan + kPlanHeader + l * kPlanBlock;
    auto at = [&](int j) { return kPlanHeader + l * kPlanBlock + j; };
    StepBlock b;
    b.norm1 = floats(at(0), C), b.bias1 = floats(at(1), C, true);
    b.norm2 = floats(at(2), C), b.bias2 = floats(at(3), C, true);
    b.keys = floats(at(4), cache), b.vals = floats(at(5), cache);
    StepLinear* linears[] = {&b.qkv, &b.o, &b.fc, &b.down};
    const int64_t shapes[4][2] = {{C, 3 * C}, {C, C}, {C, s.inner}, {s.inner, C}};
    for (int j = 0; j < 4; j++) {
      const int base = kPlanBlockNorms + 2 + j * kPlanLinear;
      StepLinear& linear = *linears[j];
      linear.in = shapes[j][0], linear.out = shapes[j][1];
      linear.r = static_cast<int64_t>(p[base + 4]);
      linear.scale = static_cast<float>(p[base + 5]);
      if (p[base + 4] != std::floor(p[base + 4]) || linear.r < 0 || linear.r > rank) {
        inside = false;
        break;
      }
      linear.w = floats(at(base), PackedFloats(linear.in, linear.out));
      linear.bias = floats(at(base + 1), linear.out, true);
      linear.a = linear.r > 0 ? floats(at(base + 2), linear.r * linear.in) : nullptr;
      linear.b = linear.r > 0 ? floats(at(base + 3), linear.out * linear.r) : nullptr;
      macs += static_cast<double>(linear.in) * (linear.out + (linear.r > 0 ? 2 * linear.r : 0));
    }
    s.blocks.push_back(b);
  }
  if (!inside) return Throw(env, "decodeStep's plan names memory outside the heap");
  for (int64_t r = 0; r < B; r++) {
    if (s.ids[r] < 0 || s.ids[r] >= s.V || s.positions[r] < 0 || s.positions[r] >= s.capacity)
      return Throw(env, "decodeStep: row " + std::to_string(r) + "'s token id or position is out of range");
    if (s.starts[r] > slot) return Throw(env, "decodeStep: a row starts after the new token");
  }
  std::vector<float> rstd(B);
  s.rstd = rstd.data();
  const int parts = static_cast<int>(std::min<int64_t>(pool.Size(), B / kStepRowsPerThread));
  if (parts < 2 || macs * B < kStepParallelMacs) {
    std::vector<float> scores(s.capacity);
    StepRows(s, 0, B, scores.data());
    return nullptr;
  }
  pool.Run([&](int t) {
    if (t >= parts) return;
    std::vector<float> scores(s.capacity);
    StepRows(s, B * t / parts, B * (t + 1) / parts, scores.data());
  });
  return nullptr;
}

napi_value Threads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  if (argc >= 1) {
    int32_t threads = 0;
    if (napi_get_value_int32(env, argv[0], &threads) != napi_ok || threads < 1 || threads > 64)
      return Throw(env, "threads takes an integer from 1 to 64");
    pool.Resize(threads);
  }
  napi_value result;
  napi_create_int32(env, pool.Size(), &result);
  return result;
}

napi_value Init(napi_env env, napi_value exports) {
  openblas_set_num_threads(1);
  const std::pair<const char*, napi_callback> functions[] = {
      {"gemm", Gemm},         {"threads", Threads},         {"exp", Exp},
      {"attend", Attend},     {"causalSoftmax", CausalSoftmax}, {"softmaxGrad", SoftmaxGrad},
      {"layerNorm", LayerNorm}, {"layerNormGrad", LayerNormGrad}, {"adamw", AdamW},
      {"gelu", Gelu},         {"geluGrad", GeluGrad},       {"decodeStep", DecodeStep},
      {"attention", CausalAttention}, {"attentionGrad", CausalAttentionGrad},
  };
  for (const auto& [name, callback] : functions) {
    napi_value fn;
    napi_create_function(env, name, NAPI_AUTO_LENGTH, callback, nullptr, &fn);
    napi_set_named_property(env, exports, name, fn);
  }
  return exports;
}

}  // namespace

NAPI_MODULE_INIT() { return Init(env, exports); }
