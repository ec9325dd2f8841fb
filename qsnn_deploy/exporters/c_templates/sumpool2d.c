/* $node: SumPool2d $in_shape -> $out_shape, kernel $kh x $kw, stride $sh x $sw (no padding). */
static void $fn(const $in_ctype in[$in_size])
{
    int32_t c, r, q, kr, kq;
    for (c = 0; c < $out_c; c++) {
        for (r = 0; r < $out_h; r++) {
            for (q = 0; q < $out_w; q++) {
                $out_ctype sum = 0;
                for (kr = 0; kr < $kh; kr++)
                    for (kq = 0; kq < $kw; kq++) sum += ($out_ctype)$read;
                $out[(c * $out_h + r) * $out_w + q] = sum;
            }
        }
    }
}

