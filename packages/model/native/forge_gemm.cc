// forge's native matrix product for the tfjs wasm backend (see src/backend/native-gemm.ts).
//
// gemm(heap, aOffset, bOffset, cOffset, batch, m, n, k, transposeA, transposeB, strideA,
//      strideB, strideC) computes C[i] = op(A[i]) · op(B[i]) for i < batch with OpenBLAS' sgemm,
// where the operands are row-major float32 arrays at byte offsets into `heap` (the wasm
// backend's memory) and strides count floats between batch items (0: one operand shared by
// every item). A product large enough to pay for waking the pool is split across it: batches
// first, else rows (or columns, for a wide one-row product). OpenBLAS itself runs one thread,
// so nothing spins between calls.
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
#include <immintrin.h>
#include <node_api.h>

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
void openblas_set_num_threads(int threads);
}

namespace {

constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;
// Below this many multiply-adds a product runs on the calling thread. Measured on a 2-core
// AVX2 machine, two threads first win at ~2^24 (256 × 512 × 128: 417 µs on one, 398 on two;
// 1024 × 512 × 128: 1,632 and 900); below that, waking the pool and splitting into thinner
// products that OpenBLAS runs less well cost more than the second core gives.
constexpr double kParallelMacs = 16777216;

class Pool {
 public:
  ~Pool() { Stop(); }

  void Resize(int threads) {
    std::lock_guard<std::mutex> calls(call_mu_);
    Stop();
    size_ = threads;
    // Each worker starts from the current generation, read here: a worker that read it itself
    // could start after the first Run() had already advanced it, and wait forever.
    uint64_t start;
    {
      std::lock_guard<std::mutex> lock(mu_);
      start = generation_;
    }
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
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = &job;
      pending_ = size_ - 1;
      generation_++;
    }
    wake_.notify_all();
    job(0);
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [this] { return pending_ == 0; });
    job_ = nullptr;
  }

 private:
  void Loop(int index, uint64_t seen) {
    for (;;) {
      const std::function<void(int)>* job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock, [&] { return quit_ || generation_ != seen; });
        if (quit_) return;
        seen = generation_;
        job = job_;
      }
      (*job)(index);
      std::lock_guard<std::mutex> lock(mu_);
      if (--pending_ == 0) done_.notify_one();
    }
  }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      quit_ = true;
    }
    wake_.notify_all();
    for (auto& worker : workers_) worker.join();
    workers_.clear();
    quit_ = false;
    size_ = 1;
  }

  std::mutex call_mu_;  // one product at a time (the addon may be loaded by several threads)
  std::mutex mu_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;
  uint64_t generation_ = 0;
  int pending_ = 0;
  int size_ = 1;
  bool quit_ = false;
};

Pool pool;

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
  int64_t ints[12] = {};
  double numbers[8] = {};
};

// Reads `name`'s arguments into `args`; false, with a JavaScript error thrown, when one is
// missing or bad.
bool Parse(napi_env env, napi_callback_info info, const std::string& name, size_t ints,
           size_t numbers, Args& args) {
  napi_value argv[21];
  size_t argc = 21;
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
__attribute__((target("avx2,fma"))) void ExpAvx2(const float* x, float* y, int64_t count) {
  const __m256 hi = _mm256_set1_ps(88.3762626647949f), lo = _mm256_set1_ps(-87.3365447504f);
  const __m256 overflow = _mm256_set1_ps(88.7228391117f), underflow = _mm256_set1_ps(-103.972f);
  const __m256 log2e = _mm256_set1_ps(1.44269504088896341f);
  const __m256 c1 = _mm256_set1_ps(0.693359375f), c2 = _mm256_set1_ps(-2.12194440e-4f);
  const __m256 p0 = _mm256_set1_ps(1.9875691500e-4f), p1 = _mm256_set1_ps(1.3981999507e-3f),
               p2 = _mm256_set1_ps(8.3334519073e-3f), p3 = _mm256_set1_ps(4.1665795894e-2f),
               p4 = _mm256_set1_ps(1.6666665459e-1f), p5 = _mm256_set1_ps(5.0000001201e-1f);
  const __m256 one = _mm256_set1_ps(1.0f), inf = _mm256_set1_ps(INFINITY);
  int64_t i = 0;
  for (; i + 8 <= count; i += 8) {
    const __m256 in = _mm256_loadu_ps(x + i);
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
    out = _mm256_blendv_ps(out, in, _mm256_cmp_ps(in, in, _CMP_UNORD_Q));
    _mm256_storeu_ps(y + i, out);
  }
  for (; i < count; i++) y[i] = std::exp(x[i]);
}

void ExpScalar(const float* x, float* y, int64_t count) {
  for (int64_t i = 0; i < count; i++) y[i] = std::exp(x[i]);
}

const bool kHasAvx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");

// Σ a[i]·b[i] in float32.
__attribute__((target("avx2,fma"))) float DotAvx2(const float* a, const float* b, int64_t n) {
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

float DotScalar(const float* a, const float* b, int64_t n) {
  float sum = 0;
  for (int64_t i = 0; i < n; i++) sum += a[i] * b[i];
  return sum;
}

constexpr float kGeluC = 0.7978845608028654f;  // √(2/π)
constexpr float kGeluK = 0.044715f;
constexpr int64_t kChunk = 1024;

__attribute__((target("avx2,fma"))) void GeluAvx2(const float* x, float* y, float* s, int64_t n) {
  float t[kChunk];
  for (int64_t at = 0; at < n; at += kChunk) {
    const int64_t m = n - at < kChunk ? n - at : kChunk;
    for (int64_t i = 0; i < m; i++) {
      const float v = x[at + i];
      t[i] = -2.0f * kGeluC * (v + kGeluK * v * v * v);
    }
    ExpAvx2(t, t, m);
    for (int64_t i = 0; i < m; i++) {
      const float sigma = 1.0f / (1.0f + t[i]);
      s[at + i] = sigma;
      y[at + i] = x[at + i] * sigma;
    }
  }
}

void GeluScalar(const float* x, float* y, float* s, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const float v = x[i];
    const float sigma = 1.0f / (1.0f + std::exp(-2.0f * kGeluC * (v + kGeluK * v * v * v)));
    s[i] = sigma;
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
  GeluGradBody(dy, x, s, dx, n);
}

void GeluGradScalar(const float* dy, const float* x, const float* s, float* dx, int64_t n) {
  GeluGradBody(dy, x, s, dx, n);
}

napi_value Gelu(napi_env env, napi_callback_info info) {
  Args args;
  if (!Parse(env, info, "gelu", 4, 0, args)) return nullptr;
  const int64_t* v = args.ints;
  if (!Inside(args, {v[0], v[1], v[2]}, v[3])) return Throw(env, "gelu's operands lie outside the heap");
  (kHasAvx2 ? GeluAvx2 : GeluScalar)(At<const float>(args, v[0]), At<float>(args, v[1]),
                                     At<float>(args, v[2]), v[3]);
  return nullptr;
}

napi_value GeluGrad(napi_env env, napi_callback_info info) {
  Args args;
  if (!Parse(env, info, "geluGrad", 5, 0, args)) return nullptr;
  const int64_t* v = args.ints;
  if (!Inside(args, {v[0], v[1], v[2], v[3]}, v[4]))
    return Throw(env, "geluGrad's operands lie outside the heap");
  (kHasAvx2 ? GeluGradAvx2 : GeluGradScalar)(At<const float>(args, v[0]), At<const float>(args, v[1]),
                                             At<const float>(args, v[2]), At<float>(args, v[3]), v[4]);
  return nullptr;
}

// Rows [r0, r1) of fn across the pool when there are `elements` ≥ 2^20 to touch.
template <typename Fn>
void ForRows(int64_t rows, int64_t elements, Fn fn) {
  const int threads = pool.Size();
  if (threads == 1 || elements < (1 << 20)) {
    fn(0, rows);
    return;
  }
  pool.Run([&](int t) { fn(rows * t / threads, rows * (t + 1) / threads); });
}

__attribute__((target("avx2,fma"))) void CausalSoftmaxRowsAvx2(const float* s, float* p,
                                                               int64_t r0, int64_t r1,
                                                               int64_t t, int64_t tk) {
  for (int64_t r = r0; r < r1; r++) {
    const float* in = s + r * tk;
    float* out = p + r * tk;
    const int64_t valid = r % t + tk - t + 1;
    float max = -INFINITY;
    for (int64_t j = 0; j < valid; j++) max = in[j] > max ? in[j] : max;
    for (int64_t j = 0; j < valid; j++) out[j] = in[j] - max;
    ExpAvx2(out, out, valid);
    double sum = 0;
    for (int64_t j = 0; j < valid; j++) sum += out[j];
    const float inverse = static_cast<float>(1.0 / sum);
    for (int64_t j = 0; j < valid; j++) out[j] *= inverse;
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
    for (int64_t j = 0; j < cols; j++) out[j] = q[j] * (g[j] - dot);
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
  (kHasAvx2 ? ExpAvx2 : ExpScalar)(At<const float>(args, v[0]), At<float>(args, v[1]), v[2]);
  return nullptr;
}

// attend(heap, q, qRow, keys, vals, out, starts, batch, heads, kvHeads, headDim, capacity,
//        end, scale): for each row r with starts[r] ≥ 0 and each query head h (key/value head
// h / (heads / kvHeads)):
//   s[t] = scale · K[r, kv, t] · q[r, h] for t in [starts[r], end)
//   out[r, h] = Σ_t softmax(s)[t] · V[r, kv, :, t]
// q rows are qRow floats apart (heads · headDim used); keys are [batch, kvHeads, capacity,
// headDim]; values transposed, [batch, kvHeads, headDim, capacity]; out [batch, heads,
// headDim]; starts int32 [batch]. Offsets in bytes.
napi_value Attend(napi_env env, napi_callback_info info) {
  Args args;
  if (!Parse(env, info, "attend", 12, 1, args)) return nullptr;
  const int64_t* v = args.ints;
  const double scale = args.numbers[0];
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
  const auto* q = At<const float>(args, qOff);
  const auto* keys = At<const float>(args, kOff);
  const auto* vals = At<const float>(args, vOff);
  auto* out = At<float>(args, oOff);
  const auto* starts = At<const int32_t>(args, sOff);
  float (*dot)(const float*, const float*, int64_t) = kHasAvx2 ? DotAvx2 : DotScalar;
  std::vector<float> scores(capacity);
  const int64_t group = heads / kvHeads;
  for (int64_t r = 0; r < batch; r++) {
    const int64_t start = starts[r];
    if (start < 0) continue;
    if (start >= end) return Throw(env, "attend: a row starts at or after the end");
    const int64_t count = end - start;
    for (int64_t h = 0; h < heads; h++) {
      const int64_t kv = h / group;
      const float* qh = q + r * qRow + h * hd;
      const float* k = keys + ((r * kvHeads + kv) * capacity + start) * hd;
      float max = -INFINITY;
      for (int64_t t = 0; t < count; t++) {
        const float s = dot(k + t * hd, qh, hd) * static_cast<float>(scale);
        scores[t] = s;
        if (s > max) max = s;
      }
      for (int64_t t = 0; t < count; t++) scores[t] -= max;
      if (kHasAvx2)
        ExpAvx2(scores.data(), scores.data(), count);
      else
        ExpScalar(scores.data(), scores.data(), count);
      double sum = 0;
      for (int64_t t = 0; t < count; t++) sum += scores[t];
      const float inverse = static_cast<float>(1.0 / sum);
      for (int64_t t = 0; t < count; t++) scores[t] *= inverse;
      const float* vt = vals + (r * kvHeads + kv) * hd * capacity + start;
      float* o = out + (r * heads + h) * hd;
      for (int64_t j = 0; j < hd; j++) o[j] = dot(vt + j * capacity, scores.data(), count);
    }
  }
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
      {"gelu", Gelu},         {"geluGrad", GeluGrad},
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
