/* model.h: $banner */
#ifndef QSNN_MODEL_H
#define QSNN_MODEL_H

#include <stdint.h>

/* --- the graph's sizes --------------------------------------------------------------- */
#define QSNN_TIMESTEPS $timesteps          /* T: steps per sample (qsnn_run) */
#define QSNN_STATIC_INPUT $static_input    /* 1: one sample at every step; 0: one frame per step */
#define QSNN_INPUT_SIZE $input_size        /* values of one sample (static) or one frame ($input_shape) */
#define QSNN_SAMPLE_SIZE $sample_size      /* values qsnn_run reads: the sample, or the T frames */
#define QSNN_INPUT_BITS $input_bits        /* $input_type */
#define QSNN_INPUT_SIGNED $input_signed
#define QSNN_INPUT_BYTES $input_bytes        /* sizeof(qsnn_input_t) */
#define QSNN_OUTPUT_SIZE $output_size      /* output neurons */
#define QSNN_OUTPUT_MEMBRANE $output_membrane  /* 0: outputs are spike counts; 1: the membranes V[T-1] of a non-spiking readout */
#define QSNN_NUM_LAYERS $num_layers        /* LIF layers, in chain order */
#define QSNN_MAX_LAYER_SIZE $max_layer_size

typedef $input_ctype qsnn_input_t;
typedef $output_ctype qsnn_output_t;      /* uint32_t spike counts, or int32_t membranes */

/* --- status of qsnn_step / qsnn_run ---------------------------------------------------- */
/* 0: ok; 1 + i: LIF layer i (overflow policy "error") left its state type, the model stopped */
#define QSNN_OK 0

/* --- LIF layers, for testbenches: name, neurons, and this step's spikes (0/1, C order) --- */
extern const char *const qsnn_layer_names[QSNN_NUM_LAYERS];
extern const int32_t qsnn_layer_sizes[QSNN_NUM_LAYERS];
extern const uint8_t *const qsnn_layer_spikes[QSNN_NUM_LAYERS];

/* V = 0, S = 0 in every layer, outputs 0, step counter 0. */
void qsnn_reset(void);

/* One time step. x: the sample (static input: the same one at every step of a sample;
 * the layers before the first LIF are computed at its first step only) or this step's frame.
 * Returns QSNN_OK or 1 + the index of the layer that overflowed. */
int qsnn_step(const qsnn_input_t x[QSNN_INPUT_SIZE]);

/* The outputs since the last qsnn_reset: spike counts, or (QSNN_OUTPUT_MEMBRANE) the
 * output layer's membranes after the last step. */
const qsnn_output_t *qsnn_output_counts(void);

/* qsnn_reset, then QSNN_TIMESTEPS steps of x (the sample, or T frames one after another);
 * writes the outputs (as qsnn_output_counts). Returns as qsnn_step. */
int qsnn_run(const qsnn_input_t x[QSNN_SAMPLE_SIZE], qsnn_output_t counts[QSNN_OUTPUT_SIZE]);

#endif /* QSNN_MODEL_H */
