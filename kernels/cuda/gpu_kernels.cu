// CUDA versions of mxgen's generation kernels (see gpu_api.h).  Same
// arithmetic and the same sampling rules as the CPU ops (kernels/ops/):
// temperature, then top-k, then top-p over the sorted (stable, descending)
// probabilities, keeping every id >= the last kept probability, then one
// categorical draw walking ids in order.
#include <cuda_runtime.h>

#include <cfloat>
#include <cmath>
#include <vector>

#include "gpu_api.h"
#include "philox.cuh"

namespace mxgen {
namespace gpu {
namespace {

constexpr int kThreads = 256;

__device__ inline float sigmoidf(float v) { return 1.f / (1.f + expf(-v)); }

// ------------------------------------------------------------------ sampler
// One block per row.  Shared memory: z (V), p_sorted (V), rank (V).
__global__ void sample_kernel(const float* logits, int V, SamplingArgs s,
                              RandState* states, int num_states,
                              float* ids_out, int ids_stride) {
  extern __shared__ float shared[];
  float* z = shared;
  float* sorted = z + V;
  int* rank = reinterpret_cast<int*>(sorted + V);
  __shared__ float red_val[kThreads];
  __shared__ int red_idx[kThreads];
  __shared__ float total;
  const int row = blockIdx.x, tid = threadIdx.x;
  const float* x = logits + static_cast<size_t>(row) * V;

  if (s.temperature == 0.f) {               // greedy: first index of the maximum
    float best = -FLT_MAX;
    int best_i = V;
    for (int v = tid; v < V; v += blockDim.x)
      if (x[v] > best || (x[v] == best && v < best_i)) { best = x[v]; best_i = v; }
    red_val[tid] = best;
    red_idx[tid] = best_i;
    __syncthreads();
    for (int step = blockDim.x / 2; step > 0; step /= 2) {
      if (tid < step) {
        const float o = red_val[tid + step];
        const int oi = red_idx[tid + step];
        if (o > red_val[tid] || (o == red_val[tid] && oi < red_idx[tid])) {
          red_val[tid] = o;
          red_idx[tid] = oi;
        }
      }
      __syncthreads();
    }
    if (tid == 0) ids_out[static_cast<size_t>(row) * ids_stride] = static_cast<float>(red_idx[0]);
    return;
  }
  for (int v = tid; v < V; v += blockDim.x) z[v] = x[v] / s.temperature;
  __syncthreads();
  // rank of each id in the stable descending order
  for (int v = tid; v < V; v += blockDim.x) {
    int r = 0;
    const float zv = z[v];
    for (int u = 0; u < V; ++u) r += (z[u] > zv) || (z[u] == zv && u < v);
    rank[v] = r;
  }
  __syncthreads();
  if (s.top_k > 0 && s.top_k < V) {
    // the CPU op drops values below the k-th largest (ties with it stay)
    for (int v = tid; v < V; v += blockDim.x) sorted[rank[v]] = z[v];
    __syncthreads();
    const float kth = sorted[s.top_k - 1];
    __syncthreads();
    for (int v = tid; v < V; v += blockDim.x) if (z[v] < kth) z[v] = -INFINITY;
    __syncthreads();
  }
  if (tid == 0) {
    float mx = -INFINITY;
    for (int v = 0; v < V; ++v) mx = fmaxf(mx, z[v]);
    double sum = 0;
    for (int v = 0; v < V; ++v) { z[v] = expf(z[v] - mx); sum += z[v]; }
    total = static_cast<float>(sum);
  }
  __syncthreads();
  for (int v = tid; v < V; v += blockDim.x) z[v] = z[v] / total;
  __syncthreads();
  if (s.top_p < 1.f) {
    for (int v = tid; v < V; v += blockDim.x) sorted[rank[v]] = z[v];
    __syncthreads();
    if (tid == 0) {
      double before = 0;
      float cut = 0;
      for (int r = 0; r < V; ++r) {
        if (before >= s.top_p) break;
        cut = sorted[r];
        before += sorted[r];
      }
      double kept = 0;
      for (int v = 0; v < V; ++v) { if (z[v] < cut) z[v] = 0; kept += z[v]; }
      total = static_cast<float>(kept);
    }
    __syncthreads();
    for (int v = tid; v < V; v += blockDim.x) z[v] = z[v] / total;
    __syncthreads();
  }
  if (tid == 0) {
    RandState state = states[row];                   // row < num_states (checked)
    const double u = 1.0 - uniform_double(&state);   // [0, 1), as the CPU op
    states[row] = state;
    double acc = 0;
    int pick = 0;
    for (int v = 0; v < V; ++v) {
      if (z[v] <= 0) continue;
      acc += z[v];
      pick = v;
      if (u < acc) break;
    }
    ids_out[static_cast<size_t>(row) * ids_stride] = static_cast<float>(pick);
  }
}

// ------------------------------------------------------------------ the RNN
// ids are checked on the host before the first step and come from the
// sampler after it; an id out of [0, V) would still read zeros, never
// outside the table.
__global__ void embed_kernel(const float* ids, const float* embed, int N, int E, int V,
                             float* x) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= N * E) return;
  const int n = i / E, e = i % E;
  const float id = ids[n];
  x[i] = id >= 0.f && id < static_cast<float>(V)
             ? embed[static_cast<size_t>(id) * E + e] : 0.f;
}

// Y (N, R) = X (N, K) W^T + b1 + b2, W (R, K) row-major: one warp per output.
__global__ void linear_kernel(const float* X, const float* W, const float* b1, const float* b2,
                              int N, int R, int K, float* Y) {
  const int warp = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
  if (warp >= N * R) return;
  const int n = warp / R, r = warp % R;
  const float* x = X + static_cast<size_t>(n) * K;
  const float* w = W + static_cast<size_t>(r) * K;
  float acc = 0.f;
  for (int k = lane; k < K; k += 32) acc += x[k] * w[k];
  for (int off = 16; off > 0; off /= 2) acc += __shfl_down_sync(0xffffffffu, acc, off);
  if (lane == 0) Y[warp] = acc + (b1 ? b1[r] : 0.f) + (b2 ? b2[r] : 0.f);
}

// a = i2h, b = h2h pre-activations (N, G*H); h (and c) (N, H) updated in place;
// x (N, H) receives the new h (the next layer's input).
__global__ void gates_kernel(int mode, const float* a, const float* b, float* h, float* c,
                             float* x, int N, int H) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= N * H) return;
  const int n = i / H, j = i % H;
  float out;
  if (mode == 3) {                                             // lstm i, f, g, o
    const float* an = a + static_cast<size_t>(n) * 4 * H;
    const float* bn = b + static_cast<size_t>(n) * 4 * H;
    const float ig = sigmoidf(an[j] + bn[j]);
    const float fg = sigmoidf(an[H + j] + bn[H + j]);
    const float gg = tanhf(an[2 * H + j] + bn[2 * H + j]);
    const float og = sigmoidf(an[3 * H + j] + bn[3 * H + j]);
    const float cn = fg * c[i] + ig * gg;
    c[i] = cn;
    out = og * tanhf(cn);
  } else if (mode == 2) {                                      // gru r, z, n
    const float* an = a + static_cast<size_t>(n) * 3 * H;
    const float* bn = b + static_cast<size_t>(n) * 3 * H;
    const float r = sigmoidf(an[j] + bn[j]);
    const float z = sigmoidf(an[H + j] + bn[H + j]);
    const float cand = tanhf(an[2 * H + j] + r * bn[2 * H + j]);
    out = (1.f - z) * cand + z * h[i];
  } else {
    const float v = a[i] + b[i];
    out = mode == 1 ? tanhf(v) : fmaxf(v, 0.f);
  }
  h[i] = out;
  x[i] = out;
}

__global__ void copy_ids_kernel(const float* src, int N, int stride, float* dst) {
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n < N) dst[n] = src[static_cast<size_t>(n) * stride];
}

inline int blocks(long n, int threads) { return static_cast<int>((n + threads - 1) / threads); }

}  // namespace

const char* sample(const float* logits, int N, int V, SamplingArgs s, void* rand_states,
                   int num_states, float* ids_out, void* stream) {
  if (V > kMaxVocab) return "mxgen GPU sampler: vocabulary larger than 3072";
  if (N > num_states) return "mxgen GPU sampler: more rows than MXNet's GPU random states";
  if (N == 0) return nullptr;
  const size_t shmem = static_cast<size_t>(V) * (2 * sizeof(float) + sizeof(int));
  sample_kernel<<<N, kThreads, shmem, static_cast<cudaStream_t>(stream)>>>(
      logits, V, s, static_cast<RandState*>(rand_states), num_states, ids_out,
      1);
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

const char* copy(void* dst, const void* src, size_t bytes, void* stream) {
  const cudaError_t err = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice,
                                          static_cast<cudaStream_t>(stream));
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

size_t workspace_floats(int N, int E, int H, int G, int V) {
  const size_t n = static_cast<size_t>(N);
  return 2 * n * G * H + n * V + n * (E > H ? E : H) + n;   // i2h, h2h, logits, x, ids
}

const char* char_rnn_generate(int mode, int num_layers, int N, int E, int H, int V, int length,
                              const float* ids_in, float* const* states, const float* embed,
                              const float* const* layer_w, const float* dec_w,
                              const float* dec_b, SamplingArgs s, void* rand_states,
                              int num_states, float* workspace, float* ids_out, void* stream) {
  if (V > kMaxVocab) return "mxgen GPU generation: vocabulary larger than 3072";
  if (N > num_states) return "mxgen GPU generation: more rows than MXNet's GPU random states";
  {   // the input ids, checked once on the host (one small copy per call)
    std::vector<float> host(N);
    cudaMemcpyAsync(host.data(), ids_in, sizeof(float) * N, cudaMemcpyDeviceToHost,
                    static_cast<cudaStream_t>(stream));
    cudaStreamSynchronize(static_cast<cudaStream_t>(stream));
    for (float id : host)
      if (!(id >= 0.f && id < static_cast<float>(V)) || id != floorf(id))
        return "mxgen GPU generation: an input id is not in the vocabulary";
  }
  const int G = mode == 3 ? 4 : mode == 2 ? 3 : 1, GH = G * H, per = mode == 3 ? 2 : 1;
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  float* i2h = workspace;
  float* h2h = i2h + static_cast<size_t>(N) * GH;
  float* logits = h2h + static_cast<size_t>(N) * GH;
  float* x = logits + static_cast<size_t>(N) * V;
  float* ids = x + static_cast<size_t>(N) * (E > H ? E : H);
  cudaMemcpyAsync(ids, ids_in, sizeof(float) * N, cudaMemcpyDeviceToDevice, st);
  const size_t shmem = static_cast<size_t>(V) * (2 * sizeof(float) + sizeof(int));
  for (int t = 0; t < length; ++t) {
    embed_kernel<<<blocks(static_cast<long>(N) * E, kThreads), kThreads, 0, st>>>(ids, embed, N,
                                                                                E, V, x);
    int in_size = E;
    for (int l = 0; l < num_layers; ++l) {
      const float* w_i2h = layer_w[l];
      const float* w_h2h = w_i2h + static_cast<size_t>(GH) * in_size;
      const float* b_i2h = w_h2h + static_cast<size_t>(GH) * H;
      const float* b_h2h = b_i2h + GH;
      float* h = states[l * per];
      float* c = mode == 3 ? states[l * per + 1] : nullptr;
      const long outs = static_cast<long>(N) * GH;
      // gru keeps b_h2h inside the reset product; the others fold both biases
      linear_kernel<<<blocks(outs * 32, kThreads), kThreads, 0, st>>>(
          x, w_i2h, b_i2h, mode == 2 ? nullptr : b_h2h, N, GH, in_size, i2h);
      linear_kernel<<<blocks(outs * 32, kThreads), kThreads, 0, st>>>(
          h, w_h2h, mode == 2 ? b_h2h : nullptr, nullptr, N, GH, H, h2h);
      gates_kernel<<<blocks(static_cast<long>(N) * H, kThreads), kThreads, 0, st>>>(
          mode, i2h, h2h, h, c, x, N, H);
      in_size = H;
    }
    linear_kernel<<<blocks(static_cast<long>(N) * V * 32, kThreads), kThreads, 0, st>>>(
        x, dec_w, dec_b, nullptr, N, V, H, logits);
    sample_kernel<<<N, kThreads, shmem, st>>>(
        logits, V, s, static_cast<RandState*>(rand_states), num_states,
        ids_out + t, length);
    copy_ids_kernel<<<blocks(N, kThreads), kThreads, 0, st>>>(ids_out + t, N, length, ids);
  }
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

}  // namespace gpu
}  // namespace mxgen
