/* testbench.c: $banner
 *
 * Runs the golden vectors of golden.bin (layout: docs/formats.md, "C export") through the
 * model and compares every LIF layer's spikes at every step and the output spike counts.
 *
 *     ./testbench [golden.bin]          check; exit 1 at the first mismatch, naming the
 *                                       sample, layer, step and neuron
 *     ./testbench golden.bin --bench    run qsnn_run on every sample, compare the output
 *                                       counts only, print samples/s of the model: per
 *                                       CPU-second (clock()) and per wall-clock second
 *                                       (POSIX clock_gettime; the testbench is a host program)
 * Exit status: 0 all identical, 1 mismatch or model error, 2 unreadable golden file.
 */
#define _POSIX_C_SOURCE 199309L /* clock_gettime, for the wall-clock figure of --bench */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model.h"

#define RASTER_BYTES(neurons) (((int64_t)QSNN_TIMESTEPS * (neurons) + 7) / 8)

static qsnn_input_t sample[QSNN_SAMPLE_SIZE];
static qsnn_output_t golden_counts[QSNN_OUTPUT_SIZE];
static uint8_t rasters[QSNN_NUM_LAYERS][RASTER_BYTES(QSNN_MAX_LAYER_SIZE)];
static unsigned char bytes[8 * QSNN_SAMPLE_SIZE + 4 * QSNN_OUTPUT_SIZE];

static int fail(const char *what)
{
    fprintf(stderr, "testbench: %s\n", what);
    return 2;
}

/* little-endian unsigned integer of n bytes */
static uint64_t le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    int i;
    for (i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static int read_u32(FILE *f, uint32_t *out)
{
    unsigned char b[4];
    if (fread(b, 1, 4, f) != 4) return 0;
    *out = (uint32_t)le(b, 4);
    return 1;
}

/* the header must describe this model: magic, then the sizes model.h states */
static int read_header(FILE *f, uint32_t *samples)
{
    char magic[8];
    uint32_t want[5], got;
    int i;
    want[0] = QSNN_TIMESTEPS;
    want[1] = QSNN_SAMPLE_SIZE;
    want[2] = QSNN_INPUT_BYTES;
    want[3] = QSNN_OUTPUT_SIZE;
    want[4] = QSNN_NUM_LAYERS;
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, "QSNNGLD1", 8) != 0) return fail("not a golden file (magic QSNNGLD1)");
    if (!read_u32(f, samples)) return fail("truncated header");
    for (i = 0; i < 5; i++) {
        if (!read_u32(f, &got)) return fail("truncated header");
        if (got != want[i]) {
            fprintf(stderr, "testbench: header field %d is %lu, this model needs %lu\n", i + 1, (unsigned long)got, (unsigned long)want[i]);
            return 2;
        }
    }
    for (i = 0; i < QSNN_NUM_LAYERS; i++) {
        if (!read_u32(f, &got)) return fail("truncated header");
        if (got != (uint32_t)qsnn_layer_sizes[i]) return fail("layer sizes differ from the model's");
    }
    return 0;
}

static int read_sample(FILE *f)
{
    int32_t n, l;
    if (fread(bytes, 1, (size_t)QSNN_INPUT_BYTES * QSNN_SAMPLE_SIZE, f) != (size_t)QSNN_INPUT_BYTES * QSNN_SAMPLE_SIZE) return 0;
    for (n = 0; n < QSNN_SAMPLE_SIZE; n++) {
        uint64_t v = le(bytes + (size_t)n * QSNN_INPUT_BYTES, QSNN_INPUT_BYTES);
        /* two's complement of QSNN_INPUT_BYTES bytes -> the value, without signed overflow */
        if (QSNN_INPUT_SIGNED && QSNN_INPUT_BYTES < 8 && (v >> (8 * QSNN_INPUT_BYTES - 1)) != 0) {
            sample[n] = (qsnn_input_t)(-(int64_t)((((uint64_t)1 << (8 * QSNN_INPUT_BYTES)) - v)));
        } else {
            sample[n] = (qsnn_input_t)v;
        }
    }
    if (fread(bytes, 1, 4 * QSNN_OUTPUT_SIZE, f) != 4 * QSNN_OUTPUT_SIZE) return 0;
    for (n = 0; n < QSNN_OUTPUT_SIZE; n++) {
        uint64_t v = le(bytes + 4 * n, 4);
        /* a membrane is a 32-bit two's complement word: the value, without signed overflow */
        golden_counts[n] = (QSNN_OUTPUT_MEMBRANE && (v >> 31) != 0) ? (qsnn_output_t)(-(int64_t)(((uint64_t)1 << 32) - v)) : (qsnn_output_t)v;
    }
    for (l = 0; l < QSNN_NUM_LAYERS; l++) {
        size_t size = (size_t)RASTER_BYTES(qsnn_layer_sizes[l]);
        if (fread(rasters[l], 1, size, f) != size) return 0;
    }
    return 1;
}

/* bit t * N + n of the layer's raster, most significant bit first */
static int golden_spike(int32_t layer, int32_t t, int32_t n)
{
    int64_t bit = (int64_t)t * qsnn_layer_sizes[layer] + n;
    return (rasters[layer][bit >> 3] >> (7 - (bit & 7))) & 1;
}

static int check_counts(uint32_t s, const qsnn_output_t *counts)
{
    int32_t n;
    for (n = 0; n < QSNN_OUTPUT_SIZE; n++) {
        if (counts[n] != golden_counts[n]) {
            printf("MISMATCH sample %lu output neuron %ld: %s %lld, golden %lld\n", (unsigned long)s, (long)n,
                   QSNN_OUTPUT_MEMBRANE ? "membrane" : "count", (long long)counts[n], (long long)golden_counts[n]);
            return 1;
        }
    }
    return 0;
}

static int model_error(uint32_t s, int32_t t, int status)
{
    printf("MODEL ERROR sample %lu step %ld: layer %s overflowed its state (overflow \"error\")\n", (unsigned long)s, (long)t,
           qsnn_layer_names[status - 1]);
    return 1;
}

/* every layer's spikes at every step, then the counts */
static int check_sample(uint32_t s)
{
    int32_t t, l, n;
    qsnn_reset();
    for (t = 0; t < QSNN_TIMESTEPS; t++) {
        int status = qsnn_step(sample + (QSNN_STATIC_INPUT ? 0 : t * QSNN_INPUT_SIZE));
        if (status != QSNN_OK) return model_error(s, t, status);
        for (l = 0; l < QSNN_NUM_LAYERS; l++) {
            for (n = 0; n < qsnn_layer_sizes[l]; n++) {
                int want = golden_spike(l, t, n);
                if (qsnn_layer_spikes[l][n] != want) {
                    printf("MISMATCH sample %lu layer %s step %ld neuron %ld: spike %d, golden %d\n", (unsigned long)s, qsnn_layer_names[l],
                           (long)t, (long)n, qsnn_layer_spikes[l][n], want);
                    return 1;
                }
            }
        }
    }
    return check_counts(s, qsnn_output_counts());
}

/* every sample of the file; 0 all identical, 1 a mismatch or model error, 2 a bad file */
static int run_file(FILE *f, int bench)
{
    uint32_t samples, s;
    qsnn_output_t counts[QSNN_OUTPUT_SIZE];
    double seconds = 0.0, wall = 0.0;
    if (read_header(f, &samples) != 0) return 2;
    for (s = 0; s < samples; s++) {
        if (!read_sample(f)) return fail("truncated sample");
        if (bench) {
            struct timespec w0, w1;
            clock_t start = clock();
            int status;
            clock_gettime(CLOCK_MONOTONIC, &w0);
            status = qsnn_run(sample, counts);
            clock_gettime(CLOCK_MONOTONIC, &w1);
            seconds += (double)(clock() - start) / CLOCKS_PER_SEC;
            wall += (double)(w1.tv_sec - w0.tv_sec) + 1e-9 * (double)(w1.tv_nsec - w0.tv_nsec);
            if (status != QSNN_OK) return model_error(s, -1, status);
            if (check_counts(s, counts)) return 1;
        } else if (check_sample(s)) {
            return 1;
        }
    }
    if (bench) {
        printf("BENCH %lu samples x %d steps: CPU %.6f s = %.2f samples/s, wall %.6f s = %.2f samples/s (output counts identical)\n",
               (unsigned long)samples, QSNN_TIMESTEPS, seconds, seconds > 0 ? samples / seconds : 0.0, wall, wall > 0 ? samples / wall : 0.0);
    } else {
        printf("PASS %lu samples x %d steps: output counts and the spikes of %d layers at every step identical\n", (unsigned long)samples,
               QSNN_TIMESTEPS, QSNN_NUM_LAYERS);
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "golden.bin";
    int status;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "testbench: cannot open %s (export with --golden N to write it)\n", path);
        return 2;
    }
    status = run_file(f, argc > 2 && strcmp(argv[2], "--bench") == 0);
    fclose(f);
    return status;
}
