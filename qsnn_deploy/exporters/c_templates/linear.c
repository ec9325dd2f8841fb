/* $node: Linear $in_size -> $out_size. Scatter form: every non-zero input i adds $term. */
static void $fn(const $in_ctype in[$in_size])
{
    int32_t i, o;
    for (o = 0; o < $out_size; o++) $out[o] = 0;
    for (i = 0; i < $in_size; i++) {
        const int64_t value = $read;
        const $w_ctype *column = &${wname}[i * $out_size];
        if (value == 0) continue; /* event-driven: zeros add nothing */
        for (o = 0; o < $out_size; o++) $out[o] += $add;
    }
}

