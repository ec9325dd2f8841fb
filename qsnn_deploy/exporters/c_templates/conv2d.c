/* $node: Conv2d $in_shape -> $out_shape, kernel $kh x $kw, stride $sh x $sw, padding $ph x $pw.
 * Scatter form: every non-zero input value x[i][h][w] adds $term to the outputs whose
 * window covers it, output (r, q) with r * $sh + kr = h + $ph (and alike for q, kq).
 * The output is stored channels-last, [r][q][o], so that a column adds to contiguous sums.$pool_note */
static void $fn(const $in_ctype in[$in_size])
{
    int32_t i, h, w, kr, kq, o;
    for (o = 0; o < $out_size; o++) $out[o] = 0;
    for (i = 0; i < $in_c; i++) {
        for (h = 0; h < $in_h; h++) {
            for (w = 0; w < $in_w; w++) {
                const int64_t value = $read;
                if (value == 0) continue; /* event-driven: zeros add nothing */
                for (kr = 0; kr < $kh; kr++) {
                    const int32_t row = h + $ph - kr; /* = r * $sh */
                    if (row < 0 || row % $sh != 0 || row / $sh >= $rows_used) continue;
                    for (kq = 0; kq < $kw; kq++) {
                        const int32_t col = w + $pw - kq; /* = q * $sw */
                        if (col < 0 || col % $sw != 0 || col / $sw >= $cols_used) continue;
                        {
                            const $w_ctype *column = &${wname}[((i * $kh + kr) * $kw + kq) * $out_c];
                            $out_ctype *dst = &$out[($dst_row * $dst_w + $dst_col) * $out_c];
                            for (o = 0; o < $out_c; o++) dst[o] += $add;
                        }
                    }
                }
            }
        }
    }
}

