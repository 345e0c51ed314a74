/* Round float32 values to the nearest float16 value (ties to even), in place, kept as float32.
 *
 * The interpreter rounds every fp16 op's output this way. F16C's conversions round exactly as
 * numpy's astype(float16) and torch's half casts do (subnormals, overflow to infinity, NaN
 * kept a NaN), in one pass over the array where torch's casts took two through a buffer.
 */
#include <immintrin.h>
#include <stdint.h>

void fp16_round(float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
        __m128i ha = _mm256_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT);
        __m128i hb = _mm256_cvtps_ph(b, _MM_FROUND_TO_NEAREST_INT);
        _mm256_storeu_ps(x + i, _mm256_cvtph_ps(ha));
        _mm256_storeu_ps(x + i + 8, _mm256_cvtph_ps(hb));
    }
    for (; i < n; i++)
        x[i] = _cvtsh_ss(_cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT));
}
