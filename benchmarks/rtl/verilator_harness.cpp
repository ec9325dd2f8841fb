// Plain Verilator harness of qsnn_core for benchmarks/rtl_shipped.py (no VPI: a cocotb run of
// the same core is about 0.3 M cycles/s, this one millions). Reads samples from argv[1] (one
// line of input words per sample), drives the streams with the debug stream always ready, and
// prints per sample every layer-step's spiking neurons ("L layer n ..."), the output counts
// ("C ...") and the core's own cycle and synapse-read counters ("Y cycles taps").
#include <cstdio>
#include <cstdlib>
#include <vector>
#include "Vqsnn_core.h"
#include "verilated.h"

static void tick(Vqsnn_core* top) {
    top->clk = 1;
    top->eval();
    top->clk = 0;
    top->eval();
}

int main(int argc, char** argv) {
    Verilated::commandArgs(argc, argv);
    if (argc < 4) return 2;
    FILE* in = fopen(argv[1], "r");
    const int words_per_sample = atoi(argv[2]);
    const int outputs = atoi(argv[3]);
    Vqsnn_core* top = new Vqsnn_core;
    top->clk = 0;
    top->rst = 1;
    top->dbg_en = 1;
    top->dbg_ready = 1;
    top->out_ready = 1;
    top->in_valid = 0;
    top->eval();
    for (int i = 0; i < 3; i++) tick(top);
    top->rst = 0;
    top->eval();
    std::vector<long> words(words_per_sample);
    std::vector<int> spikes;
    while (true) {
        for (int i = 0; i < words_per_sample; i++)
            if (fscanf(in, "%ld", &words[i]) != 1) return 0;
        size_t next = 0;
        int received = 0;
        printf("S\n");
        while (received < outputs) {
            top->in_valid = next < words.size();
            top->in_data = next < words.size() ? words[next] : 0;
            top->eval();
            if (top->in_ready && top->in_valid) next++;
            if (top->dbg_valid) {
                if (top->dbg_eol) {
                    printf("L %d", (int)top->dbg_layer);
                    for (int n : spikes) printf(" %d", n);
                    printf("\n");
                    spikes.clear();
                } else {
                    spikes.push_back((int)top->dbg_neuron);
                }
            }
            if (top->out_valid) {
                printf(received == 0 ? "C %d" : " %d", (int)top->out_data);
                if (++received == outputs) printf("\nY %u %u\n", top->cycles, top->taps);
            }
            tick(top);
        }
        fflush(stdout);
    }
}
