// The simulated serial board: the board's design (serial bridge + accelerator, no PLL) in
// Verilator, its UART pins connected to a pseudo-terminal.
//
// The harness clocks the model freely. Bytes that the host writes to the pseudo-terminal
// are sent to the `rx` pin one after another, 8N1 at DIVISOR clocks per bit, as a USB-UART
// chip would; the `tx` pin is sampled in the middle of each bit and every byte received
// is written to the pseudo-terminal. The host opens the terminal's name (printed on
// stdout as "PTY <path>") like any serial port. The harness keeps the terminal's other
// side open itself, so a host may close it and a new one open it again (bytes the board
// sends meanwhile wait in the terminal, as they would in a USB-UART chip).
//
// Usage: tb_bridge <divisor> [max_cycles]. Ends when stdin is closed (or max_cycles is
// reached) and prints "STATS cycles=<n> rx_bytes=<n> tx_bytes=<n>".

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <poll.h>
#include <termios.h>
#include <unistd.h>
#include <vector>

#include "Vtop.h"
#include "verilated.h"

namespace {

struct LineOut {            // host -> board: bytes serialised onto the rx pin
    std::deque<unsigned char> queue;
    int bit = -1;           // -1 idle, 0 start, 1..8 data, 9 stop
    unsigned count = 0;
    unsigned char byte = 0;
    int level(unsigned divisor) {
        if (bit < 0) {
            if (queue.empty()) return 1;
            byte = queue.front();
            queue.pop_front();
            bit = 0;
            count = 0;
        }
        int v = bit == 0 ? 0 : bit == 9 ? 1 : (byte >> (bit - 1)) & 1;
        if (++count == divisor) {
            count = 0;
            if (++bit == 10) bit = -1;
        }
        return v;
    }
};

struct LineIn {             // board -> host: the tx pin sampled mid-bit
    int bit = -1;
    unsigned count = 0;
    unsigned value = 0;
    bool sample(int level, unsigned divisor, unsigned char *out) {
        if (bit < 0) {
            if (level == 0) {
                bit = 0;
                count = divisor / 2;
            }
            return false;
        }
        if (count != 0) {
            --count;
            return false;
        }
        count = divisor - 1;
        if (bit == 0) {
            if (level != 0) bit = -1;       // a glitch
            else { bit = 1; value = 0; }
            return false;
        }
        if (bit <= 8) {
            value |= unsigned(level) << (bit - 1);
            ++bit;
            return false;
        }
        bit = -1;                           // stop bit
        if (level == 0) return false;       // framing error: dropped
        *out = (unsigned char)value;
        return true;
    }
};

}  // namespace

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s <divisor> [max_cycles]\n", argv[0]);
        return 2;
    }
    const unsigned divisor = (unsigned)strtoul(argv[1], nullptr, 0);
    const unsigned long long max_cycles = argc > 2 ? strtoull(argv[2], nullptr, 0) : 0;
    if (divisor < 4) {
        fprintf(stderr, "divisor must be at least 4\n");
        return 2;
    }

    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) {
        perror("posix_openpt");
        return 1;
    }
    const char *name = ptsname(master);
    int keep = open(name, O_RDWR | O_NOCTTY);       // our own hold on the host's side
    if (keep < 0) {
        perror("open pty");
        return 1;
    }
    struct termios tio;
    tcgetattr(keep, &tio);
    cfmakeraw(&tio);
    tcsetattr(keep, TCSANOW, &tio);
    fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
    printf("PTY %s\n", name);
    fflush(stdout);

    Verilated::commandArgs(argc, argv);
    Vtop *top = new Vtop;
    LineOut to_board;
    LineIn from_board;
    std::vector<unsigned char> to_host;
    unsigned long long cycles = 0, rx_bytes = 0, tx_bytes = 0;

    top->rx = 1;
    top->rst = 1;
    for (int i = 0; i < 8; ++i) {
        top->clk = 0;
        top->eval();
        top->clk = 1;
        top->eval();
    }
    top->rst = 0;

    unsigned char buf[4096];
    bool running = true;
    while (running && (max_cycles == 0 || cycles < max_cycles)) {
        for (int i = 0; i < 512; ++i) {
            top->rx = to_board.level(divisor);
            top->clk = 0;
            top->eval();
            top->clk = 1;
            top->eval();
            unsigned char byte;
            if (from_board.sample(top->tx, divisor, &byte)) {
                to_host.push_back(byte);
                ++tx_bytes;
            }
        }
        cycles += 512;
        // The line carries one byte per 10 bits: take no more from the terminal than a
        // short queue, so the host's writes wait in the terminal as in a USB-UART chip.
        if (to_board.queue.size() < 64) {
            ssize_t n = read(master, buf, sizeof buf < 256 ? sizeof buf : 256);
            if (n > 0) {
                to_board.queue.insert(to_board.queue.end(), buf, buf + n);
                rx_bytes += (unsigned long long)n;
            }
        }
        if (!to_host.empty()) {
            ssize_t n = write(master, to_host.data(), to_host.size());
            if (n > 0) to_host.erase(to_host.begin(), to_host.begin() + n);
        }
        if ((cycles & 0xFFFF) == 0) {
            struct pollfd p = {0, POLLIN, 0};
            if (poll(&p, 1, 0) > 0) {
                ssize_t n = read(0, buf, sizeof buf);
                if (n <= 0) running = false;
            }
        }
    }
    top->final();
    delete top;
    printf("STATS cycles=%llu rx_bytes=%llu tx_bytes=%llu\n", cycles, rx_bytes, tx_bytes);
    fflush(stdout);
    close(keep);
    close(master);
    return 0;
}
