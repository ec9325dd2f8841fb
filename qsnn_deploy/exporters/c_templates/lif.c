/* $node: LIF, $channels channel(s) x $plane neuron(s), state $state, decay M = $decay_mul,
 * k = $decay_shift, r = $round_add ($rounding), input shift F = $input_shift, overflow $overflow,
 * compare $compare, reset $reset ($reset_timing):
 *     $equation
 * Returns 0, or $status if a membrane leaves $state under overflow "error". */
static int $fn(const $in_ctype in[$size])
{
    int32_t c, p;
    for (c = 0; c < $channels; c++) {
        const int64_t thr = ${cname}_threshold[c];
        const int64_t bias = ${cname}_bias[c];
        for (p = 0; p < $plane; p++) {
            const int32_t n = c * $plane + p;
            const int64_t a = $read; /* the synaptic sum A */
            const int64_t v_prev = $v_prev;
            const int64_t rest = $decay(v_prev, $decay_mul, $decay_shift, $round_add) + bias$delayed_subtract;
            int64_t v;
            int s;
$membrane
            s = v $cmp thr;$immediate_reset
            ${cname}_v[n] = ($state_ctype)v;
            ${cname}_s[n] = (uint8_t)s;
        }
    }
    return 0;
}

