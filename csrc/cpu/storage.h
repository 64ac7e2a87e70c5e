// Storage types of the CPU kernels: compute is always float32; bfloat16 and float16 are 16-bit
// patterns converted with round-to-nearest-even (as PyTorch does), written without compiler
// extensions so any C++17 compiler builds them.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace fastp2p::cpu {

struct BFloat16 { uint16_t bits; };
struct Float16 { uint16_t bits; };

inline uint32_t float_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline float bits_float(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

inline float to_float(float v) { return v; }
inline float to_float(BFloat16 v) { return bits_float(uint32_t(v.bits) << 16); }
inline float to_float(Float16 v) {
  uint32_t sign = uint32_t(v.bits & 0x8000u) << 16;
  uint32_t exponent = (v.bits >> 10) & 0x1Fu;
  uint32_t mantissa = v.bits & 0x3FFu;
  if (exponent == 0) {  // zero or subnormal: mantissa * 2**-24, exact in float
    float magnitude = float(mantissa) * 5.9604644775390625e-8f;
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 31) return bits_float(sign | 0x7F800000u | (mantissa << 13));
  return bits_float(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

template <typename T> T from_float(float f);
template <> inline float from_float<float>(float f) { return f; }
template <> inline BFloat16 from_float<BFloat16>(float f) {
  const uint32_t u = float_bits(f);
  const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  // Integer select (no branch, so loops vectorize): NaN stays a quiet NaN.
  return {uint16_t((u & 0x7FFFFFFFu) > 0x7F800000u ? 0x7FC0u : rounded)};
}
template <> inline Float16 from_float<Float16>(float f) {
  uint32_t u = float_bits(f);
  uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  u &= 0x7FFFFFFFu;
  if (u >= 0x7F800000u) return {uint16_t(sign | 0x7C00u | (u > 0x7F800000u ? 0x200u : 0u))};
  if (u >= 0x477FF000u) return {uint16_t(sign | 0x7C00u)};  // rounds past 65504: infinity
  if (u < 0x38800000u) {  // below 2**-14: subnormal half; scaling by 2**24 is exact
    return {uint16_t(sign | uint16_t(std::nearbyint(bits_float(u) * 16777216.0f)))};
  }
  u += 0xC8000FFFu + ((u >> 13) & 1u);  // rebias the exponent (-112 << 23) and round to even
  return {uint16_t(sign | (u >> 13))};
}

}  // namespace fastp2p::cpu
