/* $node: Flatten of a channels-last map $shape: back to C order (index c * $plane + p). */
static void $fn(const $ctype in[$size])
{
    int32_t c, p;
    for (c = 0; c < $channels; c++)
        for (p = 0; p < $plane; p++) $out[c * $plane + p] = in[p * $channels + c];
}

