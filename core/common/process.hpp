// Child processes with RAII: a process started here is killed and reaped if its owner goes away
// without waiting for it, so no child outlives a failed parent.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace pangea {

class ChildProcess {
public:
    // Starts argv[0] (a path) with argv; with `output`, its stdout and stderr go to that file
    // (created or appended). Throws std::runtime_error naming the program on failure.
    explicit ChildProcess(const std::vector<std::string>& argv, const std::string& output = "");
    ~ChildProcess();
    ChildProcess(ChildProcess&& other) noexcept;
    ChildProcess& operator=(ChildProcess&&) = delete;
    ChildProcess(const ChildProcess&) = delete;

    pid_t pid() const { return pid_; }

    // Waits up to `timeout` for the process to end. Returns its exit code (128 + N when killed by
    // signal N), or std::nullopt if it is still running.
    std::optional<int> wait_for(std::chrono::milliseconds timeout);

    // Sends a signal (if it is still running).
    void signal(int number) const;

private:
    pid_t pid_ = -1;
    std::optional<int> exit_code_;
};

// The path of the running executable.
std::string current_executable();

// For a process that trains (glibc's malloc): tensors of 4 MiB and more get pages of their own,
// given back when freed. glibc's default raises that threshold to the largest block freed so far
// (up to 32 MiB), after which freed gradients' and optimizer temporaries' blocks stay resident as
// holes in the heap: ~1.4 bytes per parameter measured, 6% over the DiLoCo state. And the heap
// keeps up to 1 GiB free at its top instead of giving it back: a step's temporaries come back
// every step, and faulting their pages in again each time made bf16 steps 25% slower. (What
// the heap keeps was in use at the step's peak anyway: the peak does not grow.)
void use_training_allocator();

// This process's resident memory now and at its peak (VmRSS, VmHWM), in bytes; 0 if unknown.
struct MemoryUse {
    uint64_t resident = 0;
    uint64_t peak = 0;
};
MemoryUse memory_use();

}  // namespace pangea
