// The fast simulated board: the accelerator's Verilator model clocked by a small bus
// master that Python drives through stdin/stdout (xnorlearn/sim/fastsim.py).
//
// Requests are little-endian 32-bit words: op, a, b, max_cycles, max_us, n, then n
// payload words. Every request gets one reply: status, a, b, n, cycles (low, high),
// then n payload words. Commands that clock the model set a goal (a write or read
// answered, a response packet received, the input queue sent, a number of cycles) and
// run until it is met or until max_cycles cycles or max_us microseconds have passed
// (status MORE); OP_WAIT goes on towards the same goal with a new budget.
//
// On every clock, whatever the command, the words of the input queue are offered on
// s_axis, response words on m_axis are appended to the output queue, and the AXI4-Lite
// transactions in flight move on. With stalls set, each channel idles or holds its
// ready low at random, from a seeded generator.

#include "Vtop.h"
#include "verilated.h"
#if VM_TRACE_VCD
#include "verilated_vcd_c.h"
#endif

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <memory>
#include <vector>
#include <unistd.h>

namespace {

const uint32_t MAGIC = 0x58534231;  // "XSB1"
const uint32_t PROTOCOL = 1;

enum Op : uint32_t {
    OP_HELLO = 0,   // -> a = MAGIC, b = PROTOCOL
    OP_RESET = 1,   // a = cycles of rst high; drops queues and bus transactions
    OP_WRITE = 2,   // a = address, b = data, payload[0] = strobes -> a = BRESP
    OP_READ = 3,    // a = address -> a = RDATA, b = RRESP
    OP_QUEUE = 4,   // payload = one packet (tlast on its last word) -> a = words queued
    OP_RECV = 5,    // a = max words -> payload = one packet
    OP_DRAIN = 6,   // until the input queue is empty
    OP_DROP = 7,    // drop both queues and the word on s_axis
    OP_RUN = 8,     // a = cycles to run
    OP_STALLS = 9,  // a = idle, b = backpressure (probabilities * 2**32), payload = seed
    OP_WAIT = 10,   // go on towards the goal of the last clocking command
    OP_QUIT = 11,
};

enum Status : uint32_t { ST_DONE = 0, ST_MORE = 1, ST_OVERFLOW = 2, ST_BAD = 3 };

// AXI4-Lite response for a transaction that a reset abandoned.
const uint32_t RESP_ABANDONED = 0x100;

struct Rng {  // splitmix64: small, fast, and the same on every platform
    uint64_t s = 0;
    uint32_t next32() {
        uint64_t z = (s += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return uint32_t((z ^ (z >> 31)) >> 32);
    }
};

struct Request {
    uint32_t addr, data, strb;
    uint64_t seq;
};

struct Board {
    std::unique_ptr<VerilatedContext> ctx;
    std::unique_ptr<Vtop> top;
#if VM_TRACE_VCD
    std::unique_ptr<VerilatedVcdC> trace;
#endif
    uint64_t cycles = 0;
    bool in_reset = false;  // the buses idle
    bool rst = false;

    Rng rng;
    uint32_t idle = 0, backpressure = 0;  // probabilities * 2**32

    // Command stream: words still to send, with their tlast.
    std::vector<uint32_t> in_words;
    std::vector<uint8_t> in_last;
    size_t in_head = 0;
    bool s_valid = false;

    // Response stream: words received, and how many of them carry tlast.
    std::vector<uint32_t> out_words;
    std::vector<uint8_t> out_last;
    size_t out_head = 0;
    size_t out_packets = 0;

    // AXI4-Lite writes and reads: queued requests, the one in flight, the last answer.
    std::deque<Request> wr_queue, rd_queue;
    bool wr_busy = false, aw_pending = false, w_pending = false, aw_valid = false,
         w_valid = false;
    bool rd_busy = false, ar_pending = false, ar_valid = false;
    Request wr_cur{}, rd_cur{};
    uint64_t wr_issued = 0, wr_done = 0, rd_issued = 0, rd_done = 0;
    uint32_t bresp = 0, rdata = 0, rresp = 0;

    // The goal of the last clocking command.
    uint32_t goal = OP_HELLO;
    uint64_t goal_seq = 0, goal_cycles = 0;
    uint32_t goal_max_words = 0;

    bool stall(uint32_t p) { return p && rng.next32() < p; }

    void dump(uint64_t t) {
#if VM_TRACE_VCD
        if (trace) trace->dump(t);
#else
        (void)t;
#endif
    }

    void drive() {
        Vtop &m = *top;
        if (!wr_busy && !wr_queue.empty() && !in_reset) {
            wr_cur = wr_queue.front();
            wr_queue.pop_front();
            wr_busy = aw_pending = w_pending = true;
        }
        if (aw_pending && !aw_valid) aw_valid = !stall(idle);
        if (w_pending && !w_valid) w_valid = !stall(idle);
        m.s_axil_awaddr = wr_cur.addr;
        m.s_axil_awvalid = aw_valid;
        m.s_axil_wdata = wr_cur.data;
        m.s_axil_wstrb = wr_cur.strb;
        m.s_axil_wvalid = w_valid;
        m.s_axil_bready = wr_busy && !stall(backpressure);

        if (!rd_busy && !rd_queue.empty() && !in_reset) {
            rd_cur = rd_queue.front();
            rd_queue.pop_front();
            rd_busy = ar_pending = true;
        }
        if (ar_pending && !ar_valid) ar_valid = !stall(idle);
        m.s_axil_araddr = rd_cur.addr;
        m.s_axil_arvalid = ar_valid;
        m.s_axil_rready = rd_busy && !stall(backpressure);

        if (!s_valid && in_head < in_words.size() && !in_reset) s_valid = !stall(idle);
        if (s_valid) {
            m.s_axis_tdata = in_words[in_head];
            m.s_axis_tlast = in_last[in_head];
        }
        m.s_axis_tvalid = s_valid;
        m.m_axis_tready = !in_reset && !stall(backpressure);
        m.rst = rst;
    }

    // One clock: inputs settle with clk low, the handshakes are sampled, then the edge.
    void tick() {
        drive();
        Vtop &m = *top;
        m.clk = 0;
        m.eval();
        dump(cycles * 10000 + 5000);  // ps: a 10 ns clock, falling edge
        const bool aw_fire = aw_valid && m.s_axil_awready;
        const bool w_fire = w_valid && m.s_axil_wready;
        const bool b_fire = m.s_axil_bready && m.s_axil_bvalid;
        const uint32_t b_resp = m.s_axil_bresp;
        const bool ar_fire = ar_valid && m.s_axil_arready;
        const bool r_fire = m.s_axil_rready && m.s_axil_rvalid;
        const uint32_t r_data = m.s_axil_rdata, r_resp = m.s_axil_rresp;
        const bool s_fire = s_valid && m.s_axis_tready;
        const bool m_fire = m.m_axis_tready && m.m_axis_tvalid;
        const uint32_t m_data = m.m_axis_tdata;
        const bool m_last = m.m_axis_tlast;
        m.clk = 1;
        m.eval();
        ++cycles;
        dump(cycles * 10000);

        if (in_reset) return;
        if (aw_fire) aw_pending = aw_valid = false;
        if (w_fire) w_pending = w_valid = false;
        if (b_fire) {
            bresp = b_resp;
            wr_done = wr_cur.seq;
            wr_busy = false;
        }
        if (ar_fire) ar_pending = ar_valid = false;
        if (r_fire) {
            rdata = r_data;
            rresp = r_resp;
            rd_done = rd_cur.seq;
            rd_busy = false;
        }
        if (s_fire) {
            ++in_head;
            s_valid = false;
        }
        if (m_fire) {
            out_words.push_back(m_data);
            out_last.push_back(m_last);
            out_packets += m_last;
        }
    }

    // The index just past the first tlast of the output queue (or its end).
    size_t first_packet_end() const {
        size_t i = out_head;
        while (i < out_words.size() && !out_last[i]) ++i;
        return i < out_words.size() ? i + 1 : i;
    }

    bool goal_met() const {
        switch (goal) {
        case OP_WRITE: return wr_done >= goal_seq;
        case OP_READ: return rd_done >= goal_seq;
        case OP_RECV: return out_packets > 0 || out_words.size() - out_head > goal_max_words;
        case OP_DRAIN: return in_head == in_words.size();
        case OP_RUN: return cycles >= goal_cycles;
        default: return true;
        }
    }

    void drop_in() {
        in_words.clear();
        in_last.clear();
        in_head = 0;
        s_valid = false;
    }

    void drop_out() {
        out_words.clear();
        out_last.clear();
        out_head = out_packets = 0;
    }

    void compact_out() {
        if (out_head == out_words.size()) {
            drop_out();
        } else if (out_head > (1u << 20) && out_head > out_words.size() / 2) {
            out_words.erase(out_words.begin(), out_words.begin() + out_head);
            out_last.erase(out_last.begin(), out_last.begin() + out_head);
            out_head = 0;
        }
    }

    void abandon_bus() {
        wr_queue.clear();
        rd_queue.clear();
        wr_busy = aw_pending = w_pending = aw_valid = w_valid = false;
        rd_busy = ar_pending = ar_valid = false;
        wr_done = wr_issued;
        rd_done = rd_issued;
        bresp = rresp = RESP_ABANDONED;
    }
};

uint64_t now_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

bool read_all(void *buf, size_t n) {
    char *p = static_cast<char *>(buf);
    while (n) {
        ssize_t got = read(0, p, n);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return false;
        p += got;
        n -= size_t(got);
    }
    return true;
}

void write_all(const void *buf, size_t n) {
    const char *p = static_cast<const char *>(buf);
    while (n) {
        ssize_t put = write(1, p, n);
        if (put < 0 && errno == EINTR) continue;
        if (put <= 0) {
            std::fprintf(stderr, "fastsim: cannot write a reply: %s\n", std::strerror(errno));
            std::exit(3);
        }
        p += put;
        n -= size_t(put);
    }
}

void reply(const Board &b, uint32_t status, uint32_t a = 0, uint32_t c = 0,
           const uint32_t *payload = nullptr, uint32_t n = 0) {
    uint32_t head[6] = {status, a, c, n, uint32_t(b.cycles), uint32_t(b.cycles >> 32)};
    write_all(head, sizeof head);
    if (n) write_all(payload, size_t(n) * 4);
}

// Clock towards the goal for at most max_cycles cycles and max_us microseconds.
uint32_t run(Board &b, uint64_t max_cycles, uint64_t max_us) {
    const uint64_t end = now_ns() + max_us * 1000;
    for (uint64_t n = 0; !b.goal_met(); ++n) {
        if (n >= max_cycles) return ST_MORE;
        if ((n & 1023) == 1023 && now_ns() >= end) return ST_MORE;
        b.tick();
    }
    return ST_DONE;
}

// The reply to a clocking command once it has run.
void answer(Board &b, uint32_t status) {
    if (status == ST_MORE) {
        reply(b, ST_MORE, uint32_t(b.in_words.size() - b.in_head),
              uint32_t(b.out_words.size() - b.out_head));
        return;
    }
    switch (b.goal) {
    case OP_WRITE: reply(b, ST_DONE, b.bresp); break;
    case OP_READ: reply(b, ST_DONE, b.rdata, b.rresp); break;
    case OP_RECV: {
        const size_t end = b.first_packet_end();
        const size_t n = end - b.out_head;
        if (n > b.goal_max_words || !b.out_last[end - 1]) {
            // Longer than the receiver's buffer: dropped, as a DMA channel drops it.
            b.out_head = end;
            b.out_packets -= end > 0 && b.out_last[end - 1];
            reply(b, ST_OVERFLOW, uint32_t(n));
        } else {
            reply(b, ST_DONE, 0, 0, b.out_words.data() + b.out_head, uint32_t(n));
            b.out_head = end;
            --b.out_packets;
        }
        b.compact_out();
        break;
    }
    default: reply(b, ST_DONE); break;
    }
}

}  // namespace

int main(int argc, char **argv) {
    Board b;
    b.ctx.reset(new VerilatedContext);
    b.ctx->commandArgs(argc, argv);
    b.top.reset(new Vtop(b.ctx.get(), "top"));
#if VM_TRACE_VCD
    if (argc > 1) {
        b.ctx->traceEverOn(true);
        b.trace.reset(new VerilatedVcdC);
        b.top->trace(b.trace.get(), 99);
        b.trace->open(argv[1]);
    }
#endif
    b.top->clk = 0;
    b.top->rst = 1;
    b.top->eval();

    std::vector<uint32_t> payload;
    for (;;) {
        uint32_t head[6];
        if (!read_all(head, sizeof head)) break;  // the host closed the pipe
        const uint32_t op = head[0], a = head[1], c = head[2], n = head[5];
        const uint64_t max_cycles = head[3], max_us = head[4];
        payload.resize(n);
        if (n && !read_all(payload.data(), size_t(n) * 4)) break;

        switch (op) {
        case OP_HELLO: reply(b, ST_DONE, MAGIC, PROTOCOL); break;
        case OP_RESET:
            b.abandon_bus();
            b.drop_in();
            b.drop_out();
            // rst for `a` cycles, then one more cycle with the buses idle: the top level
            // registers rst (fastsim.py), so the model leaves reset a cycle later.
            b.in_reset = b.rst = true;
            b.goal = OP_RUN;
            b.goal_cycles = b.cycles + a;
            run(b, ~0ull, ~0ull >> 20);
            b.rst = false;
            b.goal_cycles = b.cycles + 1;
            run(b, ~0ull, ~0ull >> 20);
            b.in_reset = false;
            b.goal = OP_HELLO;
            reply(b, ST_DONE);
            break;
        case OP_WRITE:
            b.wr_queue.push_back({a, c, n ? payload[0] : 0xFu, ++b.wr_issued});
            b.goal = op;
            b.goal_seq = b.wr_issued;
            answer(b, run(b, max_cycles, max_us));
            break;
        case OP_READ:
            b.rd_queue.push_back({a, 0, 0, ++b.rd_issued});
            b.goal = op;
            b.goal_seq = b.rd_issued;
            answer(b, run(b, max_cycles, max_us));
            break;
        case OP_QUEUE:
            if (!n) {
                reply(b, ST_BAD);
                break;
            }
            if (b.in_head == b.in_words.size()) {
                b.in_words.clear();
                b.in_last.clear();
                b.in_head = 0;
            }
            b.in_words.insert(b.in_words.end(), payload.begin(), payload.end());
            b.in_last.insert(b.in_last.end(), n - 1, 0);
            b.in_last.push_back(1);
            reply(b, ST_DONE, uint32_t(b.in_words.size() - b.in_head));
            break;
        case OP_RECV:
            if (!a) {
                reply(b, ST_BAD);
                break;
            }
            b.goal = op;
            b.goal_max_words = a;
            answer(b, run(b, max_cycles, max_us));
            break;
        case OP_DRAIN:
            b.goal = op;
            answer(b, run(b, max_cycles, max_us));
            break;
        case OP_DROP:
            b.drop_in();
            b.drop_out();
            reply(b, ST_DONE);
            break;
        case OP_RUN:
            b.goal = op;
            b.goal_cycles = b.cycles + a;
            answer(b, run(b, max_cycles, max_us));
            break;
        case OP_STALLS:
            b.idle = a;
            b.backpressure = c;
            b.rng.s = n >= 2 ? uint64_t(payload[0]) | uint64_t(payload[1]) << 32 : 0;
            reply(b, ST_DONE);
            break;
        case OP_WAIT: answer(b, run(b, max_cycles, max_us)); break;
        case OP_QUIT:
            reply(b, ST_DONE);
            b.top->final();
#if VM_TRACE_VCD
            if (b.trace) b.trace->close();
#endif
            return 0;
        default: reply(b, ST_BAD, op); break;
        }
    }
    b.top->final();
#if VM_TRACE_VCD
    if (b.trace) b.trace->close();
#endif
    return 0;
}
