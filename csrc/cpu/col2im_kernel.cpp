// The second half of a transposed convolution computed as GEMM + col2im: the GEMM (torch's BLAS)
// gives every input pixel's contribution to its k x k output window, and this gathers them.
// Gathering per output pixel (instead of scattering per input pixel) writes each output once,
// needs no atomics and parallelizes over output rows.
#include "dispatch.h"
#include "kernels.h"

namespace fastp2p::cpu {
namespace {

// out[c] += src[c * channel_stride]; a compile-time unit stride (channels-last weight) vectorizes.
template <int64_t kUnitStride>
inline void accumulate(float* out, const float* src, int64_t channels, int64_t channel_stride) {
  const int64_t stride = kUnitStride ? 1 : channel_stride;
  for (int64_t c = 0; c < channels; ++c) out[c] += src[c * stride];
}

}  // namespace

void col2im_transposed(const Col2imArgs& a) {
  const int64_t taps = int64_t(a.kernel) * a.kernel;
  // A cols row follows the weight's memory order: (channel, tap) or, channels-last, (tap, channel).
  const int64_t channel_stride = a.taps_minor ? taps : 1;
  const int64_t tap_stride = a.taps_minor ? 1 : a.channels;
  const int64_t rows = a.batch * a.out_height;
  parallel_for(rows, rows * a.out_width * a.channels > kParallelGrain, a.num_threads, [&](int64_t row) {
    const int64_t n = row / a.out_height, oy = row % a.out_height;
    for (int64_t ox = 0; ox < a.out_width; ++ox) {
      float* out = a.out + (row * a.out_width + ox) * a.channels;
      for (int64_t c = 0; c < a.channels; ++c) out[c] = a.bias ? a.bias[c] : 0.0f;
      // Taps with iy * stride - padding + ky == oy: ky runs over one residue class mod stride.
      for (int64_t ky = (oy + a.padding) % a.stride; ky < a.kernel; ky += a.stride) {
        const int64_t iy = (oy + a.padding - ky) / a.stride;
        if (oy + a.padding < ky || iy >= a.in_height) continue;
        for (int64_t kx = (ox + a.padding) % a.stride; kx < a.kernel; kx += a.stride) {
          const int64_t ix = (ox + a.padding - kx) / a.stride;
          if (ox + a.padding < kx || ix >= a.in_width) continue;
          const float* src = a.cols + ((n * a.in_height + iy) * a.in_width + ix) * a.channels * taps +
                             (ky * a.kernel + kx) * tap_stride;
          if (a.taps_minor) {
            accumulate<0>(out, src, a.channels, channel_stride);
          } else {
            accumulate<1>(out, src, a.channels, channel_stride);
          }
        }
      }
    }
  });
}

}  // namespace fastp2p::cpu
