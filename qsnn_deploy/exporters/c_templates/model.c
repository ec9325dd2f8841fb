/* model.c: $banner
 *
 * The integer semantics are docs/arithmetic.md, sections 6 and 7, exactly: exact synaptic
 * sums, the decay D(V) = floor((V * M + r) / 2^k), the overflow policy applied once per step
 * to the full membrane sum, the reset mode and timing, the comparison. Everything is C99
 * with <stdint.h> types, static storage, constant loop bounds, no recursion and no malloc.
 * Signed arithmetic never overflows (UBSan-clean): wrap-around is computed on uint64_t and
 * a negative value is never shifted (qsnn_floor_shift).
 */
#include "model.h"

/* floor(x / 2^k) for either sign: C99 leaves >> of a negative value implementation-defined. */
static inline int64_t qsnn_floor_shift(int64_t x, int k)
{
    return x >= 0 ? x >> k : -((-(x + 1)) >> k) - 1;
}

/* D(V) = floor((V * m + r) / 2^k) when |V| * m + r < 2^63 (checked by the generator). */
static inline int64_t qsnn_decay(int64_t v, int64_t m, int k, int64_t r)
{
    return qsnn_floor_shift(v * m + r, k);
}

/* The same D(V) without the wide product: V = q 2^k + rem, 0 <= rem < 2^k, so
 * D(V) = q m + floor((rem m + r) / 2^k) (m <= 2^k keeps every term below 2^63). */
static inline int64_t qsnn_decay_split(int64_t v, int64_t m, int k, int64_t r)
{
    const int64_t q = qsnn_floor_shift(v, k);
    const int64_t rem = v - q * ((int64_t)1 << k);
    return q * m + ((rem * m + r) >> k);
}

/* u = rest + A * 2^f, exact. |rest| < 2^50; A is clipped to +-2^(61 - f) first: beyond
 * that the sum lies outside every state type (<= 48 bits) in A's direction whatever rest
 * is, so saturation and the "error" test give the same result as with the exact A. */
static inline int64_t qsnn_membrane_sum(int64_t rest, int64_t a, int f)
{
    const int64_t lim = (int64_t)1 << (61 - f);
    a = a > lim ? lim : (a < -lim ? -lim : a);
    return rest + a * ((int64_t)1 << f);
}

/* rest + A * 2^f modulo 2^bits as two's complement (overflow "wrap"), on uint64_t: exact
 * modulo 2^64 and hence modulo 2^bits; the sign extension uses no signed overflow. */
static inline int64_t qsnn_membrane_wrap(int64_t rest, int64_t a, int f, int bits)
{
    const uint64_t u = (uint64_t)rest + ((uint64_t)a << f);
    const uint64_t sign = (uint64_t)1 << (bits - 1);
    const uint64_t low = u & ((sign << 1) - 1u);
    return (int64_t)(low ^ sign) - (int64_t)sign;
}

static inline int64_t qsnn_clamp(int64_t u, int64_t lo, int64_t hi)
{
    return u < lo ? lo : (u > hi ? hi : u);
}

/* --- constants: weights (transposed so that one input's fan-out is one contiguous column),
 * per-channel thresholds and biases ------------------------------------------------------ */
$constants
/* --- state: synaptic sums, membranes V, spikes S, outputs --------------------------------- */
$buffers
static qsnn_output_t qsnn_counts[QSNN_OUTPUT_SIZE];
static int32_t qsnn_t; /* steps since qsnn_reset */

const char *const qsnn_layer_names[QSNN_NUM_LAYERS] = {$layer_names};
const int32_t qsnn_layer_sizes[QSNN_NUM_LAYERS] = {$layer_sizes};
const uint8_t *const qsnn_layer_spikes[QSNN_NUM_LAYERS] = {$layer_spikes};

/* --- one function per node, in chain order ---------------------------------------------- */
$functions
void qsnn_reset(void)
{
    int32_t n;
$reset
    for (n = 0; n < QSNN_OUTPUT_SIZE; n++) qsnn_counts[n] = 0;
    qsnn_t = 0;
}

int qsnn_step(const qsnn_input_t x[QSNN_INPUT_SIZE])
{
    int32_t n;
    int status = QSNN_OK;
$step
    for (n = 0; n < QSNN_OUTPUT_SIZE; n++) $output_update;
    qsnn_t++;
    return status;
}

const qsnn_output_t *qsnn_output_counts(void)
{
    return qsnn_counts;
}

int qsnn_run(const qsnn_input_t x[QSNN_SAMPLE_SIZE], qsnn_output_t counts[QSNN_OUTPUT_SIZE])
{
    int32_t t, n;
    int status = QSNN_OK;
    qsnn_reset();
    for (t = 0; t < QSNN_TIMESTEPS; t++) {
        status = qsnn_step(x + (QSNN_STATIC_INPUT ? 0 : t * QSNN_INPUT_SIZE));
        if (status != QSNN_OK) break;
    }
    for (n = 0; n < QSNN_OUTPUT_SIZE; n++) counts[n] = qsnn_counts[n];
    return status;
}
