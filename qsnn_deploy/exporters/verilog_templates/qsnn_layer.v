// qsnn_layer: one layer engine of the qsnn event-scatter core (docs/fpga.md).
//
// Per time step the engine (1) scans its source memory (the previous layer's spike bitmap,
// or the input frame), (2) for every non-zero source value scatters value * weight into the
// accumulator RAM of every neuron it reaches, one synapse per cycle (2-stage pipeline with
// forwarding), and (3) runs the LIF update of every neuron, four cycles each, writing the new
// membrane and spike bit and emitting debug events. Arithmetic: docs/arithmetic.md 6.4.
// Verilog-2005; accepted by Yosys 0.23, Verilator 5.006 and Icarus Verilog.
`default_nettype none
module qsnn_layer #(
    parameter integer LAYER = 0,
    // source (previous layer's output map, or the input), C x H x W; VAL_BITS = 1 for spikes
    parameter integer IN_C = 1, parameter integer IN_H = 1, parameter integer IN_W = 1,
    parameter integer VAL_BITS = 1, parameter integer VAL_SIGNED = 0,
    parameter integer STATIC_SRC = 0,  // source is a static input: accumulate once, keep A
    // synapses: LINEAR = 1 (weight O x IN_N) or a stride-1 Conv2d + optional 2^k sum pool
    parameter integer LINEAR = 0,
    parameter integer KH = 1, parameter integer KW = 1,
    parameter integer PAD_H = 0, parameter integer PAD_W = 0,
    parameter integer CONV_H = 1, parameter integer CONV_W = 1,
    parameter integer POOL_H_SH = 0, parameter integer POOL_W_SH = 0,
    // LIF map, C x H x W; PER_NEURON = 1: threshold/bias per neuron (a 1-D LIF)
    parameter integer OUT_C = 1, parameter integer OUT_H = 1, parameter integer OUT_W = 1,
    parameter integer PER_NEURON = 0,
    parameter integer W_BITS = 4, parameter integer ACC_BITS = 16, parameter integer STATE_BITS = 24,
    parameter integer INPUT_SHIFT = 0, parameter integer DECAY_MUL = 0, parameter integer DECAY_SHIFT = 0,
    parameter integer HALF_UP = 1, parameter integer OVERFLOW = 0,  // 0 saturate, 1 wrap, 2 error
    parameter integer CMP_GE = 0, parameter integer RESET_ZERO = 0, parameter integer IMMEDIATE = 0,
    // KEEP_COUNTS: 0 none, 1 each neuron's spike count, 2 its membrane V[t] (a membrane readout;
    // COUNT_BITS = STATE_BITS), read through cnt_addr / cnt_data by the output stream
    parameter integer COUNT_BITS = 1, parameter integer KEEP_COUNTS = 0,
    parameter integer SPRAM_MIN_BITS = 16384,
    parameter WEIGHT_FILE = "weights.hex", parameter THRESHOLD_FILE = "threshold.hex",
    parameter BIAS_FILE = "bias.hex"
) (
    input wire clk,
    input wire start,        // pulse: run clear_op (zero all state) or one time step
    input wire clear_op,
    input wire first_step,   // this step is t = 0
    output reg done,         // pulse: the operation finished
    output wire [SRC_AW-1:0] src_addr,  // source read port (1-cycle latency)
    input wire [VAL_BITS-1:0] src_data,
    input wire [OUT_AW-1:0] spk_addr,   // this layer's spike bitmap, read by the next layer
    output reg spk_data,
    input wire [OUT_AW-1:0] cnt_addr,   // spike counts or membranes (KEEP_COUNTS), read by the output stream
    output reg [COUNT_BITS-1:0] cnt_data,
    input wire dbg_en,
    output wire dbg_valid,   // a spike (dbg_eol = 0) or the end of this layer's step (dbg_eol = 1)
    input wire dbg_ready,
    output wire dbg_eol,
    output wire [23:0] dbg_neuron,
    output wire tap_active,  // a synapse is read this cycle (performance counter)
    output reg ovf_error     // sticky: overflow policy "error" saw an out-of-range membrane
);
    localparam integer IN_N = IN_C * IN_H * IN_W;
    localparam integer OUT_HW = OUT_H * OUT_W;
    localparam integer OUT_N = OUT_C * OUT_HW;
    localparam integer N_PARAMS = PER_NEURON ? OUT_N : OUT_C;
    localparam integer N_WEIGHTS = LINEAR ? OUT_C * IN_N : OUT_C * IN_C * KH * KW;
    localparam integer SRC_AW = IN_N > 1 ? $clog2(IN_N) : 1;
    localparam integer OUT_AW = OUT_N > 1 ? $clog2(OUT_N) : 1;
    localparam integer WA = N_WEIGHTS > 1 ? $clog2(N_WEIGHTS) + 1 : 2;
    localparam integer PA = N_PARAMS > 1 ? $clog2(N_PARAMS) : 1;
    localparam integer CW = 24;  // signed coordinate width of the tap arithmetic
    // wide signed width of the LIF datapath: decay product, and the sum of docs/arithmetic.md 6.4
    localparam integer PW = STATE_BITS + DECAY_SHIFT + 3;
    localparam integer UW0 = (ACC_BITS + INPUT_SHIFT > STATE_BITS ? ACC_BITS + INPUT_SHIFT : STATE_BITS) + 3;
    localparam integer UW = UW0;
    localparam integer BW = PW > UW ? PW : UW;

    localparam [3:0] S_IDLE = 0, S_CLR = 1, S_SCAN_RD = 2, S_SCAN_CK = 3, S_TAP = 4, S_SCAN_ADV = 5,
                     S_LIF_RD = 6, S_LIF_EX = 7, S_LIF_DBG = 8, S_EOL = 9, S_FIN = 10, S_LIF_MUL = 11, S_LIF_SUM = 12;
    reg [3:0] state = S_IDLE;
    initial begin
        done = 0;
        ovf_error = 0;
    end

    // ---- memories -------------------------------------------------------------------------
    reg [W_BITS-1:0] weight_rom [0:N_WEIGHTS-1];
    reg [STATE_BITS-1:0] threshold_rom [0:N_PARAMS-1];
    reg [STATE_BITS-1:0] bias_rom [0:N_PARAMS-1];
    reg [ACC_BITS-1:0] acc_ram [0:OUT_N-1];
    reg spk_ram [0:OUT_N-1];
    initial begin
        $readmemh(WEIGHT_FILE, weight_rom);
        $readmemh(THRESHOLD_FILE, threshold_rom);
        $readmemh(BIAS_FILE, bias_rom);
    end

    // ---- scan of the source ---------------------------------------------------------------
    reg [SRC_AW-1:0] sn = 0;
    reg [CW-1:0] sc = 0, sy = 0, sx = 0;
    assign src_addr = sn;
    wire scan_last = (sn == IN_N - 1);
    reg [CW-1:0] ev_c = 0, ev_y = 0, ev_x = 0;
    reg [SRC_AW-1:0] ev_n = 0;
    reg [VAL_BITS-1:0] ev_val = 0;

    // ---- tap counters: output channel o, kernel row kh and column kw ----------------------
    reg [CW-1:0] o = 0, kh = 0, kw = 0;
    reg [WA-1:0] w_base = 0, w_off = 0;
    reg [OUT_AW:0] t_base = 0;
    wire signed [CW-1:0] cy = $signed(ev_y) + PAD_H - $signed(kh);
    wire signed [CW-1:0] cx = $signed(ev_x) + PAD_W - $signed(kw);
    wire [CW-1:0] py = cy >>> POOL_H_SH;
    wire [CW-1:0] px = cx >>> POOL_W_SH;
    wire tap_in = LINEAR ? 1'b1 : (cy >= 0 && cy < CONV_H && cx >= 0 && cx < CONV_W && py < OUT_H && px < OUT_W);
    wire [OUT_AW:0] tap_target = LINEAR ? o[OUT_AW:0] : t_base + py * OUT_W + px;
    wire [WA-1:0] tap_waddr = LINEAR ? w_base : w_base + w_off;
    wire tap_last_o = LINEAR ? 1'b1 : (kh == KH - 1 && kw == KW - 1);
    wire tap_last = tap_last_o && o == OUT_C - 1;
    assign tap_active = (state == S_TAP);

    // ---- pipeline stage B: read-modify-write of the accumulator, with forwarding ----------
    reg b_valid = 0, last_valid = 0;
    reg [OUT_AW-1:0] b_tgt = 0, last_tgt = 0;
    reg [VAL_BITS-1:0] b_val = 0;
    reg signed [ACC_BITS-1:0] last_acc = 0;
    reg [W_BITS-1:0] w_q = 0;
    reg [ACC_BITS-1:0] acc_q = 0;
    wire signed [ACC_BITS-1:0] acc_old = (last_valid && last_tgt == b_tgt) ? last_acc : $signed(acc_q);
    wire signed [VAL_BITS:0] b_val_s = VAL_SIGNED ? {b_val[VAL_BITS-1], b_val} : {1'b0, b_val};
    wire signed [ACC_BITS-1:0] product = $signed(w_q) * b_val_s;
    wire signed [ACC_BITS-1:0] acc_new = acc_old + product;

    // ---- LIF counters and datapath (docs/arithmetic.md 6.4) -------------------------------
    reg [OUT_AW-1:0] ln = 0;
    reg [PA-1:0] lp = 0;
    reg [OUT_AW:0] lhw = 0;
    wire lif_last = (ln == OUT_N - 1);
    reg [STATE_BITS-1:0] v_q = 0, thr_q = 0, bias_q = 0;
    reg s_q = 0;
    reg [COUNT_BITS-1:0] cnt_q = 0;
    // three pipeline stages (one neuron at a time): decay; sum; overflow, compare and reset
    localparam signed [BW-1:0] ONE = 1;
    localparam signed [UW-1:0] SMAX = (ONE <<< (STATE_BITS - 1)) - ONE;
    localparam signed [UW-1:0] SMIN = -(ONE <<< (STATE_BITS - 1));
    localparam signed [PW-1:0] MUL = DECAY_MUL;
    localparam signed [PW-1:0] RND = (HALF_UP != 0 && DECAY_SHIFT > 0) ? (ONE <<< (DECAY_SHIFT - 1)) : 0;
    wire zero_first = RESET_ZERO != 0 && IMMEDIATE == 0 && s_q;
    wire signed [PW-1:0] v_pre = zero_first ? 0 : $signed(v_q);
    wire signed [PW-1:0] decayed = (v_pre * MUL + RND) >>> DECAY_SHIFT;  // D(V), fits STATE_BITS + 1
    reg signed [STATE_BITS+1:0] decayed_q = 0;
    wire subtract_now = RESET_ZERO == 0 && IMMEDIATE == 0 && s_q;
    wire signed [UW-1:0] a_in = $signed(acc_q);
    wire signed [UW-1:0] thr_w = $signed(thr_q);
    wire signed [UW-1:0] bias_w = $signed(bias_q);
    wire signed [UW-1:0] u = decayed_q + (a_in <<< INPUT_SHIFT) + bias_w - (subtract_now ? thr_w : 0);
    reg signed [UW-1:0] u_q = 0;
    wire u_high = u_q > SMAX, u_low = u_q < SMIN;
    wire signed [STATE_BITS-1:0] thr = $signed(thr_q);
    wire signed [STATE_BITS-1:0] v1 = OVERFLOW == 1 ? u_q[STATE_BITS-1:0] : (u_high ? SMAX[STATE_BITS-1:0] : (u_low ? SMIN[STATE_BITS-1:0] : u_q[STATE_BITS-1:0]));
    wire s_new = CMP_GE ? (v1 >= thr) : (v1 > thr);
    wire signed [STATE_BITS-1:0] v_reset = RESET_ZERO ? 0 : v1 - thr;  // v1 > thr > 0: no overflow
    wire signed [STATE_BITS-1:0] v_new = (IMMEDIATE != 0 && s_new) ? v_reset : v1;
    always @(posedge clk) begin
        decayed_q <= decayed[STATE_BITS+1:0];
        u_q <= u;
    end

    assign dbg_valid = (state == S_LIF_DBG) || (state == S_EOL);
    assign dbg_eol = (state == S_EOL);
    assign dbg_neuron = ln;

    // synchronous reads (one address per memory per cycle)
    wire lif_phase = (state == S_LIF_RD || state == S_LIF_MUL || state == S_LIF_SUM || state == S_LIF_EX || state == S_CLR);
    always @(posedge clk) begin
        w_q <= weight_rom[tap_waddr];
        acc_q <= acc_ram[state == S_TAP ? tap_target[OUT_AW-1:0] : ln];
        s_q <= spk_ram[ln];
        thr_q <= threshold_rom[lp];
        bias_q <= bias_rom[lp];
        spk_data <= spk_ram[lif_phase ? ln : spk_addr];
    end

    // accumulator writes: stage B of the scatter, or zeroing
    always @(posedge clk) begin
        b_valid <= (state == S_TAP) && tap_in;
        b_tgt <= tap_target[OUT_AW-1:0];
        b_val <= ev_val;
        last_valid <= b_valid;
        last_tgt <= b_tgt;
        last_acc <= acc_new;
        if (b_valid) acc_ram[b_tgt] <= acc_new;
        else if (state == S_CLR || (state == S_LIF_EX && STATIC_SRC == 0)) acc_ram[ln] <= 0;
    end

    // membranes: a single-port RAM (one address, ln; read when not written: an iCE40 SPRAM's
    // NO_CHANGE mode). Layers of at least SPRAM_MIN_BITS ask for SPRAM; smaller ones would
    // waste a whole 256-kbit block and stay in EBR or flip-flops.
    wire v_we = (state == S_CLR) || (state == S_LIF_EX);
    wire [STATE_BITS-1:0] v_wdata = (state == S_CLR) ? {STATE_BITS{1'b0}} : v_new;
    generate
        if (OUT_N * STATE_BITS >= SPRAM_MIN_BITS) begin : g_v_spram
            (* ram_style = "huge" *) reg [STATE_BITS-1:0] v_ram [0:OUT_N-1];
            always @(posedge clk) begin
                if (v_we) v_ram[ln] <= v_wdata;
                else v_q <= v_ram[ln];
            end
        end else begin : g_v_ram
            reg [STATE_BITS-1:0] v_ram [0:OUT_N-1];
            always @(posedge clk) begin
                if (v_we) v_ram[ln] <= v_wdata;
                else v_q <= v_ram[ln];
            end
        end
    endgenerate

    // spike bitmap writes
    always @(posedge clk) begin
        if (state == S_CLR) spk_ram[ln] <= 0;
        else if (state == S_LIF_EX) spk_ram[ln] <= s_new;
    end

    generate
        if (KEEP_COUNTS != 0) begin : g_counts
            reg [COUNT_BITS-1:0] cnt_ram [0:OUT_N-1];
            always @(posedge clk) begin
                cnt_q <= cnt_ram[ln];
                cnt_data <= cnt_ram[cnt_addr];
                if (state == S_CLR) cnt_ram[ln] <= 0;
                else if (state == S_LIF_EX) cnt_ram[ln] <= (KEEP_COUNTS == 2) ? v_new : cnt_q + s_new;
            end
        end else begin : g_no_counts
            always @(posedge clk) cnt_data <= 0;
        end
    endgenerate

    // ---- control ----------------------------------------------------------------------------
    task scan_advance;  // next source position, or on to the LIF pass after the last
        begin
            if (scan_last) begin
                state <= S_LIF_RD;
            end else begin
                sn <= sn + 1;
                if (sx == IN_W - 1) begin
                    sx <= 0;
                    if (sy == IN_H - 1) begin
                        sy <= 0;
                        sc <= sc + 1;
                    end else sy <= sy + 1;
                end else sx <= sx + 1;
                state <= S_SCAN_RD;
            end
        end
    endtask

    task lif_advance;
        begin
            ln <= ln + 1;
            if (PER_NEURON != 0) lp <= lp + 1;
            else if (lhw == OUT_HW - 1) begin
                lhw <= 0;
                lp <= lp + 1;
            end else lhw <= lhw + 1;
            if (lif_last) state <= dbg_en ? S_EOL : S_FIN;
            else state <= S_LIF_RD;
        end
    endtask

    always @(posedge clk) begin
        done <= 0;
        case (state)
            S_IDLE: if (start) begin
                sn <= 0; sc <= 0; sy <= 0; sx <= 0;
                ln <= 0; lp <= 0; lhw <= 0;
                if (clear_op) begin
                    state <= S_CLR;
                    ovf_error <= 0;
                end else if (STATIC_SRC != 0 && !first_step) state <= S_LIF_RD;
                else state <= S_SCAN_RD;
            end
            S_CLR: begin
                ln <= ln + 1;
                if (lif_last) state <= S_FIN;
            end
            S_SCAN_RD: state <= S_SCAN_CK;
            S_SCAN_CK: if (src_data != 0) begin
                ev_c <= sc; ev_y <= sy; ev_x <= sx; ev_n <= sn; ev_val <= src_data;
                o <= 0; kh <= 0; kw <= 0; w_off <= 0; t_base <= 0;
                w_base <= LINEAR ? sn : sc * (KH * KW);
                state <= S_TAP;
            end else scan_advance;
            S_TAP: begin
                if (tap_last) state <= S_SCAN_ADV;
                if (LINEAR != 0 || tap_last_o) begin
                    o <= o + 1; kh <= 0; kw <= 0; w_off <= 0;
                    w_base <= w_base + (LINEAR ? IN_N : IN_C * KH * KW);
                    t_base <= t_base + OUT_HW;
                end else begin
                    w_off <= w_off + 1;
                    if (kw == KW - 1) begin
                        kw <= 0;
                        kh <= kh + 1;
                    end else kw <= kw + 1;
                end
            end
            S_SCAN_ADV: scan_advance;
            S_LIF_RD: state <= S_LIF_MUL;
            S_LIF_MUL: state <= S_LIF_SUM;
            S_LIF_SUM: state <= S_LIF_EX;
            S_LIF_EX: begin
                if (OVERFLOW == 2 && (u_high || u_low)) ovf_error <= 1;
                if (dbg_en && s_new) state <= S_LIF_DBG;
                else lif_advance;
            end
            S_LIF_DBG: if (dbg_ready) lif_advance;
            S_EOL: if (dbg_ready) state <= S_FIN;
            S_FIN: begin
                done <= 1;
                state <= S_IDLE;
            end
            default: state <= S_IDLE;
        endcase
    end
endmodule
`default_nettype wire
