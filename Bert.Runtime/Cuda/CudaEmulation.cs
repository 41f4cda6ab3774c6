using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;

namespace Bert.Runtime.Cuda;

/// <summary>A CUDA device emulated on the host, for checking the whole CUDA backend without a GPU: with
/// <c>BERT_CUDA_EMULATE=1</c> the driver, NVRTC and cuBLAS "libraries" are this class's exports, so everything above them
/// (CudaModel, the generated schedules, the optimizers, CudaTrainer, <c>bert selftest --device cuda</c>) runs unchanged.
/// Device memory is host memory; "NVRTC" compiles the program's CUDA C with clang-14 for the host into a shared library
/// (the kernels as plain functions, see <see cref="Prelude"/>) and a launch calls it: kernels without barriers run their
/// threads one after another, kernels with barriers or warp shuffles run a block's threads as coroutines. cuBLAS products
/// are loops in double over fp32 or bf16 operands. Streams run in order as the calls come (everything is synchronous);
/// events read a clock; a captured graph is the list of its launches, replayed. Slow (small models only), and a check of
/// logic, not of speed or of the GPU's own rounding (no TF32, no fused multiply-add).</summary>
public static unsafe class CudaEmulation
{
    /// <summary>The environment variable that turns the emulation on ("1"), or names the host compiler to use.</summary>
    public const string Variable = "BERT_CUDA_EMULATE";

    public static bool Enabled => Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } v && v != "0";

    /// <summary>The kernel cache's compiler id under the emulation: the host compiler and a hash of the prelude and of the
    /// dispatcher's shape, so a changed emulation never loads a library an older one built.</summary>
    public static string CompilerId => _compilerId ??= $"emulation-{Compiler}-" + Convert.ToHexStringLower(
        System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(string.Join(' ', HostCompilerArguments) + Prelude + HostProgram("static __device__ void w() { __syncthreads(); }\nextern \"C\" __global__ void k(int* x) { w(); }"))))[..16];
    static string? _compilerId;

    static string Compiler => Environment.GetEnvironmentVariable(Variable) is { } v && v.Contains("clang", StringComparison.Ordinal) ? v : "clang-14";

    internal static LoadedCudaLibrary Library(CudaLibrarySpec spec) => spec.Library is CudaLibrary.Driver or CudaLibrary.Nvrtc or CudaLibrary.Cublas or CudaLibrary.CublasLt
        ? new(spec, $"host emulation ({Compiler})", Variable, name => Export(spec.Library, name))
        : throw new CudaUnavailableException($"{spec.DisplayName} is not part of the host emulation ({Variable} is set); unset {Variable} to use the real library.");

    // ---------------- the kernels on the host ----------------

    /// <summary>Misaligned accesses, which a GPU stops a kernel for (CUDA_ERROR_MISALIGNED_ADDRESS) and x86 takes in its
    /// stride. The program is compiled with -fsanitize=alignment, which checks every typed scalar access, member access and
    /// reference binding (clang's handler, defined here, records the first one at fault with its source line), and the
    /// kernels' vector structs (rt_f4, rt_h4, bert_f4, bert_h4) get user-written copies under <c>BERT_VECTOR_COPY</c>, so
    /// that a whole 16- or 8-byte load or store through a cast pointer binds a reference the sanitizer checks (a plain
    /// aggregate copy it does not see). The emulation's dispatcher then fails the launch; a test's host program defines
    /// <c>BERT_TRAP_MISALIGNED</c> and dies instead. Needs threadIdx and blockIdx.</summary>
    public const string AlignmentChecks = """
        struct bert_ubsan_location { const char* file; unsigned line, column; };
        struct bert_ubsan_mismatch { bert_ubsan_location loc; const void* type; unsigned char log_alignment, kind; };
        // The launch's first fault (what a GPU would stop the kernel for, or leave undefined): its kind (3 a misaligned
        // access, 4 an undefined warp operation; 0 while none) and its parts, put into words by bert_emu_error on the
        // caller's stack (a kernel's thread runs on a small coroutine stack, too small for printf).
        static int bert_fault_code, bert_fault_lane;
        static const char* bert_fault_file;
        static const char* bert_fault_what;
        static unsigned bert_fault_line, bert_fault_alignment, bert_fault_mask, bert_fault_thread, bert_fault_block[2];
        static unsigned long bert_fault_address;
        static char bert_fault[512];
        static void bert_fault_at(int code, const char* file, unsigned line)
        {
        #ifdef BERT_TRAP_MISALIGNED
            __builtin_trap();   // a test's host program: it dies, as the compiler's own checks make it (-fsanitize-trap=alignment)
        #endif
            bert_fault_code = code; bert_fault_file = file; bert_fault_line = line;
            bert_fault_thread = threadIdx.x; bert_fault_block[0] = blockIdx.x; bert_fault_block[1] = blockIdx.y;
        }
        static void bert_misaligned_at(const char* file, unsigned line, unsigned long ptr, unsigned alignment)
        {
            if (bert_fault_code) return;
            bert_fault_at(3, file, line);
            bert_fault_address = ptr; bert_fault_alignment = alignment;
        }
        extern "C" __attribute__((visibility("hidden"))) void __ubsan_handle_type_mismatch_v1(bert_ubsan_mismatch* d, unsigned long ptr)
        {
            bert_misaligned_at(d->loc.file, d->loc.line, ptr, 1u << d->log_alignment);
        }
        static inline void bert_check_aligned(const void* p, unsigned alignment, const char* file, unsigned line)
        {
            asm("" : "+r"(p));   // a reference's or this's alignment is assumed by the compiler: hide where p came from
            if ((unsigned long)p & (alignment - 1)) bert_misaligned_at(file, line, (unsigned long)p, alignment);
        }
        // A copy of a vector struct: both addresses checked, then copied through pointers whose alignment the compiler does
        // not know (with the struct's own, it would use aligned moves, which x86 faults on where the GPU's load would).
        static inline void bert_copy_checked(void* d, const void* q, unsigned long bytes, unsigned alignment, const char* file, unsigned line)
        {
            asm("" : "+r"(d), "+r"(q));
            bert_check_aligned(q, alignment, file, line);
            bert_check_aligned(d, alignment, file, line);
            memcpy(d, q, bytes);
        }
        // A vector struct's members: its four-value constructor, and copies that check both addresses. The sanitizer checks
        // the reference a copy binds and the object an assignment is called on, at the caller's line, once the struct has
        // these members (a plain aggregate copy it does not see); the checks inside are the backstop.
        #define BERT_VECTOR_COPY(T, E, A) \
            T() = default; \
            T(E a, E b, E c, E d) : x(a), y(b), z(c), w(d) {} \
            T(const T& o, const char* file = __builtin_FILE(), unsigned line = __builtin_LINE()) \
            { bert_copy_checked(this, &o, sizeof(T), A, file, line); } \
            T& operator=(const T& o) \
            { bert_copy_checked(this, &o, sizeof(T), A, "a store of " #T, 0); return *this; }
        // The GPU's rt_ld2 is a 4-byte load; memcpy keeps the host free of aliasing trouble, so its alignment is checked here.
        static inline unsigned int rt_ld2(const unsigned short* p, const char* file = __builtin_FILE(), unsigned line = __builtin_LINE())
        {
            bert_check_aligned(p, 4, file, line);
            unsigned int v; memcpy(&v, p, sizeof v); return v;
        }

        """;

    /// <summary>A host C++ compiler's view of the CUDA keywords and built-ins the kernels use. A launch runs its blocks one
    /// after another; <c>bert_launch_seq</c> runs a block's threads one after another (kernels without barriers),
    /// <c>bert_launch2</c> as coroutines on one OS thread (a small x86-64 stack switch), each running until it waits at a barrier, so
    /// <c>__syncthreads</c> is a block barrier, <c>__syncwarp</c> a warp barrier, and a warp shuffle exchanges values
    /// through a lane array between two warp barriers; a thread that returns leaves its barriers (as an exited GPU thread
    /// does), and a block whose threads all wait on barriers that can never open exits with code 7 (a deadlock on a GPU).
    /// Scheduling is round robin, so runs are deterministic. <c>__shared__</c> is a function-level static (one block runs
    /// at a time).</summary>
    public const string Prelude = """
        #include <math.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>
        #define __global__
        #define __device__
        #define __forceinline__ inline
        #define __restrict__ __restrict
        #define __shared__ static
        struct bert_uint3 { unsigned int x, y, z; };
        static bert_uint3 threadIdx, blockIdx, blockDim, gridDim;   // set by the scheduler before it resumes a thread
        static inline float __int_as_float(int i) { float f; memcpy(&f, &i, sizeof f); return f; }
        static inline int __float_as_int(float f) { int i; memcpy(&i, &f, sizeof i); return i; }

        """ + AlignmentChecks + """
        // Coroutines: bert_switch saves the callee-saved registers on the current stack, stores the stack pointer in *save,
        // and resumes the coroutine whose stack pointer is load (x86-64 System V; no signal mask, unlike swapcontext).
        asm(R"(
        .text
        .globl bert_switch
        .hidden bert_switch
        .type bert_switch,@function
        bert_switch:
            pushq %rbp
            pushq %rbx
            pushq %r12
            pushq %r13
            pushq %r14
            pushq %r15
            movq %rsp, (%rdi)
            movq %rsi, %rsp
            popq %r15
            popq %r14
            popq %r13
            popq %r12
            popq %rbx
            popq %rbp
            ret
        )");
        extern "C" void bert_switch(void** save, void* load);

        struct bert_bar { int expected, arrived; unsigned gen; };
        static bert_bar bert_bars[33];                  // [0] the block, [1 + w] warp w
        static void* bert_sched_sp;
        static void* bert_sp[1024];
        static int bert_cur, bert_waiting[1024], bert_done[1024];
        static unsigned bert_wait_gen[1024];
        static const size_t bert_stack = 1 << 14;
        static char* bert_stacks;                        // 1024 stacks, allocated once
        static void bert_wait(int which)
        {
            bert_bar* b = &bert_bars[which];
            if (++b->arrived == b->expected) { b->arrived = 0; b->gen++; return; }
            bert_waiting[bert_cur] = which; bert_wait_gen[bert_cur] = b->gen;
            bert_switch(&bert_sp[bert_cur], bert_sched_sp);
        }
        static void bert_drop(int which)
        {
            bert_bar* b = &bert_bars[which];
            b->expected--;
            if (b->arrived > 0 && b->arrived == b->expected) { b->arrived = 0; b->gen++; }
        }
        // Each warp's lanes that exist (below blockDim.x) and have not returned. What is undefined on a GPU fails the
        // launch: a shuffle that reads a lane which has returned, does not exist or is not in its mask (garbage there), and
        // mma.sync without all 32 lanes (.aligned). A mask naming lanes that returned is allowed (they are not waited for).
        static unsigned bert_live[32];
        // what: the operation; lane: the lane it reads (a shuffle), or -1 with the lanes it lacks in mask (mma.sync).
        static void bert_lane_fault(const char* file, unsigned line, const char* what, unsigned mask, int lane)
        {
            if (bert_fault_code) return;
            bert_fault_at(4, file, line);
            bert_fault_what = what; bert_fault_mask = mask; bert_fault_lane = lane;
        }
        static void __syncthreads() { bert_wait(0); }
        static void __syncwarp(unsigned int = 0xffffffffu) { bert_wait(1 + (int)(threadIdx.x >> 5)); }
        // A warp's exchange of one value a lane (a lane array per value type, its bits moved as they are).
        // The checks of the mask come after the warp barrier: by then every lane that returned before the operation has
        // dropped out of the warp (checked on arrival, a lane run earlier would not yet see a later lane's return).
        template <typename V> static V bert_exchange(V v, int from, unsigned mask, const char* what, const char* file, unsigned line)
        {
            static V lanes[1024];
            int t = (int)threadIdx.x;
            lanes[t] = v;
            bert_wait(1 + (t >> 5));
            unsigned src = 1u << (from & 31);
            if (!(src & mask & bert_live[t >> 5])) bert_lane_fault(file, line, what, mask, from & 31);
            V r = lanes[(t & ~31) | (from & 31)];
            bert_wait(1 + (t >> 5));
            return r;
        }
        static float __shfl_xor_sync(unsigned int mask, float v, int m, const char* file = __builtin_FILE(), unsigned line = __builtin_LINE())
        {
            return bert_exchange(v, (int)threadIdx.x ^ m, mask, "__shfl_xor_sync", file, line);
        }
        static unsigned int __shfl_xor_sync(unsigned int mask, unsigned int v, int m, const char* file = __builtin_FILE(), unsigned line = __builtin_LINE())
        {
            return bert_exchange(v, (int)threadIdx.x ^ m, mask, "__shfl_xor_sync", file, line);
        }
        static float __shfl_sync(unsigned int mask, float v, int src, const char* file = __builtin_FILE(), unsigned line = __builtin_LINE())
        {
            return bert_exchange(v, src, mask, "__shfl_sync", file, line);
        }

        // The tensor cores' mma.sync.m16n8k16 (bf16 in, fp32 accumulation) as a warp collective: each lane leaves its
        // fragments in a lane array, and after a warp barrier computes its four results from everyone's, by the PTX ISA's
        // fragment layout (A: lane 4·(row mod 8) + (k mod 8)/2, register row/8 + 2·(k/8), half k mod 2; B: lane 4·n + (k mod 8)/2,
        // register k/8, half k mod 2; D: rows g, g + 8, columns 2·t, 2·t + 1 of lane 4·g + t).
        #define BERT_HOST_EMULATION 1
        static unsigned int bert_mma_a[1024][4], bert_mma_b[1024][2];
        static inline float bert_bf16_float(unsigned int h) { unsigned int u = (h & 0xffffu) << 16; float f; memcpy(&f, &u, sizeof f); return f; }
        static void rt_warp_mma(float* d, const unsigned int* a, const unsigned int* b, const char* file = __builtin_FILE(), unsigned line = __builtin_LINE())
        {
            int t = (int)threadIdx.x, w = t & ~31, g = (t & 31) >> 2, q = t & 3;
            for (int i = 0; i < 4; i++) bert_mma_a[t][i] = a[i];
            bert_mma_b[t][0] = b[0]; bert_mma_b[t][1] = b[1];
            bert_wait(1 + (t >> 5));
            if (~bert_live[t >> 5]) bert_lane_fault(file, line, "mma.sync", ~bert_live[t >> 5], -1);
            float r[4];
            for (int c = 0; c < 4; c++)
            {
                int row = g + 8 * (c >> 1), col = q * 2 + (c & 1);
                float sum = 0.0f;
                for (int k = 0; k < 16; k++)
                {
                    unsigned int ar = bert_mma_a[w + (row & 7) * 4 + ((k & 7) >> 1)][(row >> 3) + 2 * (k >> 3)];
                    unsigned int br = bert_mma_b[w + col * 4 + ((k & 7) >> 1)][k >> 3];
                    sum += bert_bf16_float(ar >> (16 * (k & 1))) * bert_bf16_float(br >> (16 * (k & 1)));
                }
                r[c] = d[c] + sum;
            }
            bert_wait(1 + (t >> 5));
            for (int c = 0; c < 4; c++) d[c] = r[c];
        }

        static void (*bert_run)(void*);
        static void* bert_body;
        // A coroutine's first function; it never returns: when the kernel is done it leaves its barriers and switches away.
        static void bert_start()
        {
            bert_run(bert_body);
            bert_live[threadIdx.x >> 5] &= ~(1u << (threadIdx.x & 31));
            bert_drop(1 + (int)(threadIdx.x >> 5));
            bert_drop(0);
            bert_done[bert_cur] = 1;
            bert_switch(&bert_sp[bert_cur], bert_sched_sp);
            abort();
        }
        // A fresh stack whose first bert_switch pops six zero registers and returns into bert_start, with the stack
        // aligned as after a call.
        static void* bert_fresh(int t)
        {
            char* top = bert_stacks + bert_stack * (size_t)(t + 1);
            void** sp = (void**)((size_t)top & ~(size_t)15);
            *--sp = 0;                                   // bert_start's return address (never used)
            *--sp = (void*)bert_start;
            for (int r = 0; r < 6; r++) *--sp = 0;
            return sp;
        }
        template <class F> static void bert_call(void* f) { (*(F*)f)(); }
        // BERT_CUDA_EMULATE_ORDER=reverse runs blocks, and a block's threads, last first: a kernel that depends on the order
        // (a missing barrier, blocks that race) gives other results than in order.
        static int bert_reverse = -1;
        static inline unsigned bert_order(unsigned k, unsigned count)
        {
            if (bert_reverse < 0) { const char* o = getenv("BERT_CUDA_EMULATE_ORDER"); bert_reverse = o && !strcmp(o, "reverse"); }
            return bert_reverse ? count - 1 - k : k;
        }
        // kernel<<<dim3(gx, gy), block>>> with barriers: the lambda calls the kernel with its arguments.
        template <class F> static void bert_launch2(unsigned gx, unsigned gy, unsigned block, F f)
        {
            if (block == 0 || block > 1024) exit(5);
            gridDim.x = gx; gridDim.y = gy; gridDim.z = 1; blockDim.x = block; blockDim.y = blockDim.z = 1;
            if (!bert_stacks)
            {
                if (!(bert_stacks = (char*)malloc(bert_stack * 1024))) exit(8);
                memset(bert_stacks, 0, bert_stack * 1024);  // every page touched once, here
            }
            bert_run = bert_call<F>; bert_body = &f;
            for (unsigned bo = 0; bo < gx * gy; bo++)
            {
                unsigned b = bert_order(bo, gx * gy);
                bert_bars[0].expected = (int)block; bert_bars[0].arrived = 0;
                for (unsigned w = 0; w * 32 < block; w++)
                {
                    bert_bars[1 + w].expected = (int)(block - w * 32 < 32 ? block - w * 32 : 32); bert_bars[1 + w].arrived = 0;
                    bert_live[w] = bert_bars[1 + w].expected == 32 ? 0xffffffffu : (1u << bert_bars[1 + w].expected) - 1;
                }
                for (unsigned t = 0; t < block; t++) { bert_sp[t] = bert_fresh((int)t); bert_waiting[t] = -1; bert_done[t] = 0; }
                for (int live = (int)block; live > 0;)
                {
                    int ran = 0;
                    for (unsigned to = 0; to < block; to++)
                    {
                        unsigned t = bert_order(to, block);
                        if (bert_done[t] || (bert_waiting[t] >= 0 && bert_bars[bert_waiting[t]].gen == bert_wait_gen[t])) continue;
                        bert_waiting[t] = -1; bert_cur = (int)t;
                        threadIdx.x = t; threadIdx.y = threadIdx.z = 0; blockIdx.x = b % gx; blockIdx.y = b / gx; blockIdx.z = 0;
                        bert_switch(&bert_sched_sp, bert_sp[t]);
                        ran = 1;
                        if (bert_done[t]) live--;
                    }
                    if (!ran) exit(7);
                }
            }
        }
        template <class F> static void bert_launch(unsigned grid, unsigned block, F f) { bert_launch2(grid, 1, block, f); }
        // The same for kernels without barriers or shuffles: a block's threads one after another.
        template <class F> static void bert_launch_seq(unsigned gx, unsigned gy, unsigned block, F f)
        {
            gridDim.x = gx; gridDim.y = gy; gridDim.z = 1; blockDim.x = block; blockDim.y = blockDim.z = 1;
            for (unsigned bo = 0; bo < gx * gy; bo++)
                for (unsigned to = 0; to < block; to++)
                {
                    unsigned b = bert_order(bo, gx * gy), t = bert_order(to, block);
                    threadIdx.x = t; threadIdx.y = threadIdx.z = 0; blockIdx.x = b % gx; blockIdx.y = b / gx; blockIdx.z = 0;
                    f();
                }
        }

        """;

    /// <summary>Dynamic shared memory (<c>extern __shared__ float rt_sh[]</c>) becomes a static array of this many floats.</summary>
    public const int DynamicSharedFloats = 16384;

    static readonly Regex KernelSignature = new(@"extern\s+""C""\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)", RegexOptions.Compiled);
    /// <summary>What waits for other threads: CUDA's barriers and shuffles, and the prelude's warp-collective mma. Functions of
    /// the source that call them, directly or not, are found by <see cref="BarrierFunctions"/>.</summary>
    static readonly string[] BarrierWords = ["__syncthreads", "__syncwarp", "__shfl", "rt_warp_mma"];
    static readonly Regex DeviceFunction = new(@"__device__\b[^;{}()]*?\b(\w+)\s*\(", RegexOptions.Compiled);

    /// <summary>The source's device functions that wait at a barrier or exchange values across a warp, directly or through
    /// another such function (to a fixed point): a kernel that calls one must run its threads as coroutines too.</summary>
    static HashSet<string> BarrierFunctions(string source)
    {
        var functions = new List<(string Name, string Body)>();
        foreach (Match m in DeviceFunction.Matches(source))
        {
            int at = m.Index + m.Length, depth = 1;
            for (; at < source.Length && depth > 0; at++)
                if (source[at] == '(') depth++;
                else if (source[at] == ')') depth--;
            while (at < source.Length && char.IsWhiteSpace(source[at])) at++;
            if (at < source.Length && source[at] == '{') functions.Add((m.Groups[1].Value, Body(source, at)));
        }
        var barrier = new HashSet<string>(StringComparer.Ordinal);
        for (bool grew = true; grew;)
        {
            grew = false;
            foreach (var (name, body) in functions)
                if (!barrier.Contains(name) && HasBarrier(body, barrier)) { barrier.Add(name); grew = true; }
        }
        return barrier;
    }

    static bool HasBarrier(string body, HashSet<string> functions) =>
        BarrierWords.Any(w => body.Contains(w, StringComparison.Ordinal))
        || functions.Any(f => body.Contains(f, StringComparison.Ordinal) && Regex.IsMatch(body, $@"\b{f}\s*[(<]"));

    /// <summary>The braced body that starts at <paramref name="open"/> (a '{').</summary>
    static string Body(string source, int open)
    {
        int depth = 0, end = open;
        for (; end < source.Length; end++)
        {
            if (source[end] == '{') depth++;
            else if (source[end] == '}' && --depth == 0) break;
        }
        return source[open..end];
    }

    /// <summary>The host program for <paramref name="source"/> (CUDA C as NVRTC would take it): the prelude, the source with
    /// its dynamic shared memory made static, and a dispatcher — <c>bert_emu_kernel(name)</c> gives a kernel's index,
    /// <c>bert_emu_arg_sizes(k, sizes)</c> its parameters' sizes, <c>bert_emu_launch(k, gx, gy, gz, bx, by, bz, args)</c>
    /// runs it with the driver's argument array.</summary>
    public static string HostProgram(string source, string programName = "program.cu")
    {
        var kernels = new List<(string Name, string[] Types, bool Barriers)>();
        var barrierFunctions = BarrierFunctions(source);
        foreach (Match m in KernelSignature.Matches(source))
        {
            string[] types = m.Groups[2].Value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                .Select(ParameterType).ToArray();
            string body = Body(source, source.IndexOf('{', m.Index + m.Length));
            kernels.Add((m.Groups[1].Value, types, HasBarrier(body, barrierFunctions)));
        }
        var sb = new StringBuilder(Prelude);
        // Errors in the source name its own lines, as NVRTC's do.
        sb.Append($"#line 1 \"{programName.Replace("\\", "/", StringComparison.Ordinal).Replace("\"", "'", StringComparison.Ordinal)}\"\n");
        sb.Append(source.Replace("extern __shared__ float rt_sh[];", $"__shared__ float rt_sh[{DynamicSharedFloats}];", StringComparison.Ordinal)).Append('\n');
        sb.Append("#line 1 \"bert-emulation-dispatch.cpp\"\n");
        sb.Append("static const char* bert_emu_names[] = {");
        foreach (var k in kernels) sb.Append('"').Append(k.Name).Append("\", ");
        sb.Append("0 };\n");
        sb.Append("extern \"C\" int bert_emu_kernel(const char* name) { for (int i = 0; bert_emu_names[i]; i++) if (!strcmp(bert_emu_names[i], name)) return i; return -1; }\n");
        sb.Append("extern \"C\" int bert_emu_arg_sizes(int k, int* sizes)\n{\n    switch (k)\n    {\n");
        for (int i = 0; i < kernels.Count; i++)
        {
            sb.Append($"    case {i}: ");
            for (int j = 0; j < kernels[i].Types.Length; j++) sb.Append($"sizes[{j}] = (int)sizeof({kernels[i].Types[j]}); ");
            sb.Append($"return {kernels[i].Types.Length};\n");
        }
        sb.Append("    }\n    return -1;\n}\n");
        sb.Append("extern \"C\" int bert_emu_launch(int k, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, void** a)\n{\n");
        sb.Append("    if (gz != 1 || by != 1 || bz != 1 || bx == 0 || bx > 1024) return 2;\n    bert_fault_code = 0;\n    switch (k)\n    {\n");
        for (int i = 0; i < kernels.Count; i++)
        {
            var (name, types, barriers) = kernels[i];
            string args = string.Join(", ", types.Select((t, j) => $"*({t}*)a[{j}]"));
            sb.Append($"    case {i}: {(barriers ? "bert_launch2" : "bert_launch_seq")}(gx, gy, bx, [&] {{ {name}({args}); }}); break;\n");
        }
        sb.Append("    default: return 1;\n    }\n    return bert_fault_code;\n}\n");
        sb.Append(FaultText);
        return sb.ToString();
    }

    /// <summary>The dispatcher's <c>bert_emu_error()</c>: the last launch's fault in words, on the caller's stack.</summary>
    const string FaultText = """
        extern "C" const char* bert_emu_error()
        {
            unsigned w = bert_fault_thread >> 5;
            if (bert_fault_code == 3)
                snprintf(bert_fault, sizeof bert_fault, "%s(%u): an access of %u bytes' alignment at address 0x%lx (thread %u of block %u, %u)",
                    bert_fault_file, bert_fault_line, bert_fault_alignment, bert_fault_address, bert_fault_thread, bert_fault_block[0], bert_fault_block[1]);
            else if (bert_fault_code == 4 && bert_fault_lane >= 0)
                snprintf(bert_fault, sizeof bert_fault, "%s(%u): %s with mask 0x%08x reads lane %d of warp %u, which %s (thread %u of block %u, %u)",
                    bert_fault_file, bert_fault_line, bert_fault_what, bert_fault_mask, bert_fault_lane, w,
                    bert_fault_mask >> bert_fault_lane & 1 ? "has returned or does not exist" : "is not in the mask", bert_fault_thread, bert_fault_block[0], bert_fault_block[1]);
            else if (bert_fault_code == 4)
                snprintf(bert_fault, sizeof bert_fault, "%s(%u): %s without lanes 0x%08x of warp %u, which have returned or do not exist: it needs all 32 (thread %u of block %u, %u)",
                    bert_fault_file, bert_fault_line, bert_fault_what, bert_fault_mask, w, bert_fault_thread, bert_fault_block[0], bert_fault_block[1]);
            else bert_fault[0] = 0;
            return bert_fault;
        }

        """;

    /// <summary>"const float* __restrict__ x" → "const float*".</summary>
    static string ParameterType(string parameter)
    {
        string p = parameter.Replace("__restrict__", "", StringComparison.Ordinal).Trim();
        int end = p.Length;
        while (end > 0 && (char.IsLetterOrDigit(p[end - 1]) || p[end - 1] == '_')) end--;
        return Regex.Replace(p[..end].Trim(), @"\s+", " ");
    }

    // ---------------- state ----------------

    static readonly object Gate = new();
    static readonly Dictionary<ulong, nuint> Allocations = new();
    static readonly ConcurrentDictionary<nint, double> Events = new();
    static long _nextHandle = 16;
    static nint NewHandle() => (nint)Interlocked.Increment(ref _nextHandle);

    sealed class Module(nint library, delegate* unmanaged[Cdecl]<byte*, int> kernel, delegate* unmanaged[Cdecl]<int, int*, int> argSizes,
        delegate* unmanaged[Cdecl]<int, uint, uint, uint, uint, uint, uint, void**, int> launch, delegate* unmanaged[Cdecl]<byte*> error)
    {
        public readonly nint Library = library;
        public readonly delegate* unmanaged[Cdecl]<byte*, int> Kernel = kernel;
        public readonly delegate* unmanaged[Cdecl]<int, int*, int> ArgSizes = argSizes;
        public readonly delegate* unmanaged[Cdecl]<int, uint, uint, uint, uint, uint, uint, void**, int> Launch = launch;
        /// <summary>The last launch's first fault (source line, what, thread), when it returned 3 or 4.</summary>
        public readonly delegate* unmanaged[Cdecl]<byte*> Error = error;
    }

    sealed record Function(Module Module, int Index, string Name, int[] ArgSizes);

    static readonly Dictionary<nint, Module> Modules = new();
    static readonly Dictionary<nint, Function> Functions = new();
    // Streams being captured, and graphs: their recorded operations.
    static readonly Dictionary<nint, List<Action>> Capturing = new();
    static readonly Dictionary<nint, List<Action>> Graphs = new();

    /// <summary>Runs an operation on a stream now, or records it when the stream is being captured.</summary>
    static void Enqueue(nint stream, Action op)
    {
        List<Action>? list;
        lock (Gate) Capturing.TryGetValue(stream, out list);
        if (list != null) list.Add(op); else op();
    }

    /// <summary>What a GPU would stop a kernel for (or leave undefined); the launch fails with the driver's code for it.</summary>
    sealed class KernelFaultException(int code, string message) : InvalidOperationException(message)
    {
        public int Code { get; } = code;
    }

    static int Guard(Action body)
    {
        try { body(); return 0; }
        catch (KernelFaultException e)
        {
            Console.Error.WriteLine($"CUDA emulation: {e.Message}");
            return e.Code;                               // CUDA_ERROR_MISALIGNED_ADDRESS, CUDA_ERROR_LAUNCH_FAILED
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"CUDA emulation: {e.Message}");
            return 999;
        }
    }

    // ---------------- exports ----------------

    static nint Export(CudaLibrary library, string name) => library switch
    {
        CudaLibrary.Driver => DriverExport(name),
        CudaLibrary.Nvrtc => NvrtcExport(name),
        CudaLibrary.Cublas => CublasExport(name),
        CudaLibrary.CublasLt => CublasLtExport(name),
        _ => 0,
    };

    static nint DriverExport(string name) => name switch
    {
        "cuInit" => (nint)(delegate* unmanaged[Cdecl]<uint, int>)&CuInit,
        "cuDriverGetVersion" => (nint)(delegate* unmanaged[Cdecl]<int*, int>)&CuDriverGetVersion,
        "cuDeviceGetCount" => (nint)(delegate* unmanaged[Cdecl]<int*, int>)&CuDeviceGetCount,
        "cuDeviceGet" => (nint)(delegate* unmanaged[Cdecl]<int*, int, int>)&CuDeviceGet,
        "cuDeviceGetName" => (nint)(delegate* unmanaged[Cdecl]<byte*, int, int, int>)&CuDeviceGetName,
        "cuDeviceGetAttribute" => (nint)(delegate* unmanaged[Cdecl]<int*, int, int, int>)&CuDeviceGetAttribute,
        "cuDeviceTotalMem_v2" => (nint)(delegate* unmanaged[Cdecl]<nuint*, int, int>)&CuDeviceTotalMem,
        "cuDevicePrimaryCtxRetain" => (nint)(delegate* unmanaged[Cdecl]<nint*, int, int>)&CuDevicePrimaryCtxRetain,
        "cuDevicePrimaryCtxRelease_v2" => (nint)(delegate* unmanaged[Cdecl]<int, int>)&CuIntOk,
        "cuCtxSetCurrent" => (nint)(delegate* unmanaged[Cdecl]<nint, int>)&CuHandleOk,
        "cuCtxGetCurrent" => (nint)(delegate* unmanaged[Cdecl]<nint*, int>)&CuCtxGetCurrent,
        "cuCtxSynchronize" => (nint)(delegate* unmanaged[Cdecl]<int>)&CuCtxSynchronize,
        "cuMemGetInfo_v2" => (nint)(delegate* unmanaged[Cdecl]<nuint*, nuint*, int>)&CuMemGetInfo,
        "cuMemAlloc_v2" => (nint)(delegate* unmanaged[Cdecl]<ulong*, nuint, int>)&CuMemAlloc,
        "cuMemFree_v2" => (nint)(delegate* unmanaged[Cdecl]<ulong, int>)&CuMemFree,
        "cuMemcpyHtoDAsync_v2" => (nint)(delegate* unmanaged[Cdecl]<ulong, void*, nuint, nint, int>)&CuMemcpyHtoD,
        "cuMemcpyDtoHAsync_v2" => (nint)(delegate* unmanaged[Cdecl]<void*, ulong, nuint, nint, int>)&CuMemcpyDtoH,
        "cuMemcpyDtoDAsync_v2" => (nint)(delegate* unmanaged[Cdecl]<ulong, ulong, nuint, nint, int>)&CuMemcpyDtoD,
        "cuMemsetD8Async" => (nint)(delegate* unmanaged[Cdecl]<ulong, byte, nuint, nint, int>)&CuMemsetD8,
        "cuStreamCreate" => (nint)(delegate* unmanaged[Cdecl]<nint*, uint, int>)&CuCreateHandle,
        "cuStreamSynchronize" => (nint)(delegate* unmanaged[Cdecl]<nint, int>)&CuStreamSynchronize,
        "cuStreamDestroy_v2" => (nint)(delegate* unmanaged[Cdecl]<nint, int>)&CuHandleOk,
        "cuEventCreate" => (nint)(delegate* unmanaged[Cdecl]<nint*, uint, int>)&CuCreateHandle,
        "cuEventRecord" => (nint)(delegate* unmanaged[Cdecl]<nint, nint, int>)&CuEventRecord,
        "cuEventSynchronize" => (nint)(delegate* unmanaged[Cdecl]<nint, int>)&CuHandleOk,
        "cuEventElapsedTime" => (nint)(delegate* unmanaged[Cdecl]<float*, nint, nint, int>)&CuEventElapsedTime,
        "cuEventDestroy_v2" => (nint)(delegate* unmanaged[Cdecl]<nint, int>)&CuEventDestroy,
        "cuModuleLoadData" => (nint)(delegate* unmanaged[Cdecl]<nint*, void*, int>)&CuModuleLoadData,
        "cuModuleGetFunction" => (nint)(delegate* unmanaged[Cdecl]<nint*, nint, byte*, int>)&CuModuleGetFunction,
        "cuModuleUnload" => (nint)(delegate* unmanaged[Cdecl]<nint, int>)&CuModuleUnload,
        "cuFuncSetAttribute" => (nint)(delegate* unmanaged[Cdecl]<nint, int, int, int>)&CuFuncSetAttribute,
        "cuFuncGetAttribute" => (nint)(delegate* unmanaged[Cdecl]<int*, int, nint, int>)&CuFuncGetAttribute,
        "cuLaunchKernel" => (nint)(delegate* unmanaged[Cdecl]<nint, uint, uint, uint, uint, uint, uint, uint, nint, void**, void**, int>)&CuLaunchKernel,
        "cuStreamBeginCapture_v2" => (nint)(delegate* unmanaged[Cdecl]<nint, int, int>)&CuStreamBeginCapture,
        "cuStreamEndCapture" => (nint)(delegate* unmanaged[Cdecl]<nint, nint*, int>)&CuStreamEndCapture,
        "cuGraphInstantiateWithFlags" => (nint)(delegate* unmanaged[Cdecl]<nint*, nint, ulong, int>)&CuGraphInstantiate,
        "cuGraphLaunch" => (nint)(delegate* unmanaged[Cdecl]<nint, nint, int>)&CuGraphLaunch,
        "cuGraphExecDestroy" => (nint)(delegate* unmanaged[Cdecl]<nint, int>)&CuHandleOk,
        "cuGraphDestroy" => (nint)(delegate* unmanaged[Cdecl]<nint, int>)&CuGraphDestroy,
        "cuGetErrorName" => (nint)(delegate* unmanaged[Cdecl]<int, byte**, int>)&CuGetErrorName,
        "cuGetErrorString" => (nint)(delegate* unmanaged[Cdecl]<int, byte**, int>)&CuGetErrorText,
        _ => 0,
    };

    static readonly byte* ErrorText = (byte*)Marshal.StringToHGlobalAnsi("CUDA emulation error (see the message above)");
    // The driver's names and descriptions for the codes the emulation returns.
    static readonly Dictionary<int, (nint Name, nint Text)> Errors = new()
    {
        [2] = (Marshal.StringToHGlobalAnsi("CUDA_ERROR_OUT_OF_MEMORY"), Marshal.StringToHGlobalAnsi("out of memory")),
        [101] = (Marshal.StringToHGlobalAnsi("CUDA_ERROR_INVALID_DEVICE"), Marshal.StringToHGlobalAnsi("invalid device ordinal")),
        [400] = (Marshal.StringToHGlobalAnsi("CUDA_ERROR_INVALID_HANDLE"), Marshal.StringToHGlobalAnsi("invalid resource handle")),
        [500] = (Marshal.StringToHGlobalAnsi("CUDA_ERROR_NOT_FOUND"), Marshal.StringToHGlobalAnsi("named symbol not found")),
        [600] = (Marshal.StringToHGlobalAnsi("CUDA_ERROR_NOT_READY"), Marshal.StringToHGlobalAnsi("device not ready")),
        [999] = (Marshal.StringToHGlobalAnsi("CUDA_ERROR_UNKNOWN"), (nint)ErrorText),
    };
    static readonly byte* DeviceName = (byte*)Marshal.StringToHGlobalAnsi("host emulation");

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])] static int CuOk() => 0;
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])] static int CuInit(uint flags) => 0;
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])] static int CuIntOk(int value) => 0;
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])] static int CuHandleOk(nint handle) => 0;
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])] static int CuDriverGetVersion(int* v) { *v = 13000; return 0; }
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])] static int CuDeviceGetCount(int* n) { *n = 1; return 0; }
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])] static int CuDeviceGet(int* d, int ordinal) { *d = ordinal; return ordinal == 0 ? 0 : 101; }
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])] static int CuGetErrorText(int result, byte** s) { bool known = Errors.TryGetValue(result, out var e); *s = known ? (byte*)e.Text : null; return known ? 0 : 1; }
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int CuGetErrorName(int result, byte** s) { bool known = Errors.TryGetValue(result, out var e); *s = known ? (byte*)e.Name : null; return known ? 0 : 1; }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int CuDeviceGetName(byte* buf, int length, int device)
    {
        int i = 0;
        for (; i < length - 1 && DeviceName[i] != 0; i++) buf[i] = DeviceName[i];
        buf[i] = 0;
        return 0;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int CuDeviceGetAttribute(int* v, int attribute, int device)
    {
        *v = (CuDeviceAttribute)attribute switch
        {
            CuDeviceAttribute.ComputeCapabilityMajor => 8,
            CuDeviceAttribute.ComputeCapabilityMinor => 0,
            CuDeviceAttribute.MultiprocessorCount => 1,
            CuDeviceAttribute.MaxThreadsPerBlock => 1024,
            CuDeviceAttribute.WarpSize => 32,
            CuDeviceAttribute.MaxSharedMemoryPerBlock => DynamicSharedFloats * 4,
            _ => 1,
        };
        return 0;
    }

    static readonly nuint DeviceMemory = unchecked((nuint)(8UL << 30));
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])] static int CuDeviceTotalMem(nuint* bytes, int device) { *bytes = DeviceMemory; return 0; }
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])] static int CuDevicePrimaryCtxRetain(nint* ctx, int device) { *ctx = 1; return 0; }
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])] static int CuCtxGetCurrent(nint* ctx) { *ctx = 1; return 0; }
    /// <summary>The emulated device's memory: what the live allocations leave of its 8 GiB free.</summary>
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int CuMemGetInfo(nuint* free, nuint* total)
    {
        nuint used;
        lock (Gate) used = Allocations.Values.Aggregate((nuint)0, (a, b) => a + b);
        *free = DeviceMemory - Math.Min(used, DeviceMemory);
        *total = DeviceMemory;
        return 0;
    }
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])] static int CuCreateHandle(nint* h, uint flags) { *h = NewHandle(); return 0; }

    /// <summary>CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED: what a GPU answers to a call that a stream capture (in the thread-local
    /// mode CudaModel uses) does not allow: a copy to or from host memory, an allocation, a synchronization.</summary>
    const int CaptureUnsupported = 900;

    static bool IsCapturing(nint stream) { lock (Gate) return Capturing.ContainsKey(stream); }
    static bool AnyCapture() { lock (Gate) return Capturing.Count > 0; }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int CuStreamSynchronize(nint stream) => IsCapturing(stream) ? CaptureUnsupported : 0;

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int CuCtxSynchronize() => AnyCapture() ? CaptureUnsupported : 0;

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int CuMemAlloc(ulong* p, nuint bytes)
    {
        if (AnyCapture()) return CaptureUnsupported;
        if (bytes > DeviceMemory) return 2;             // CUDA_ERROR_OUT_OF_MEMORY, as the emulated device has 8 GiB
        void* m = NativeMemory.AlignedAlloc(Math.Max(bytes, 1), 256);
        // Fresh device memory holds garbage, not zeros: a kernel that reads what nothing wrote shows it.
        new Span<byte>(m, (int)Math.Min(bytes, int.MaxValue)).Fill(0xFF);
        lock (Gate) Allocations[(ulong)m] = bytes;
        *p = (ulong)m;
        return 0;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int CuMemFree(ulong p)
    {
        lock (Gate) if (!Allocations.Remove(p)) return 1;
        NativeMemory.AlignedFree((void*)p);
        return 0;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int CuMemcpyHtoD(ulong dst, void* src, nuint bytes, nint stream)
    {
        if (IsCapturing(stream)) return CaptureUnsupported;
        Buffer.MemoryCopy(src, (void*)dst, bytes, bytes);
        return 0;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int CuMemcpyDtoH(void* dst, ulong src, nuint bytes, nint stream)
    {
        if (IsCapturing(stream)) return CaptureUnsupported;
        Buffer.MemoryCopy((void*)src, dst, bytes, bytes);
        return 0;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int CuMemcpyDtoD(ulong dst, ulong src, nuint bytes, nint stream) =>
        Guard(() => Enqueue(stream, () => Buffer.MemoryCopy((void*)src, (void*)dst, bytes, bytes)));

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int CuMemsetD8(ulong dst, byte value, nuint count, nint stream) =>
        Guard(() => Enqueue(stream, () => NativeMemory.Fill((void*)dst, count, value)));

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int CuEventRecord(nint ev, nint stream) => Guard(() => Enqueue(stream, () => Events[ev] = Stopwatch.GetTimestamp() * 1000.0 / Stopwatch.Frequency));

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int CuEventElapsedTime(float* ms, nint start, nint end)
    {
        if (!Events.TryGetValue(start, out double a) || !Events.TryGetValue(end, out double b)) return 600; // CUDA_ERROR_NOT_READY
        *ms = (float)(b - a);
        return 0;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int CuEventDestroy(nint ev) { Events.TryRemove(ev, out _); return 0; }

    /// <summary>The image is the shared library "NVRTC" built (an ELF file, its length read from its header).</summary>
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int CuModuleLoadData(nint* module, void* image) => Guard(() =>
    {
        byte* b = (byte*)image;
        if (!(b[0] == 0x7F && b[1] == (byte)'E' && b[2] == (byte)'L' && b[3] == (byte)'F'))
            throw new InvalidOperationException("the module image is not a host shared library built by the emulated NVRTC");
        ulong length = *(ulong*)(b + 0x28) + (ulong)(*(ushort*)(b + 0x3C)) * *(ushort*)(b + 0x3A);   // e_shoff + e_shnum·e_shentsize
        string path = Path.Combine(Path.GetTempPath(), $"bert-cuda-emu-{Environment.ProcessId}-{NewHandle()}.so");
        File.WriteAllBytes(path, new ReadOnlySpan<byte>(b, checked((int)length)).ToArray());
        nint lib = NativeLibrary.Load(path);
        File.Delete(path);
        var m = new Module(lib,
            (delegate* unmanaged[Cdecl]<byte*, int>)NativeLibrary.GetExport(lib, "bert_emu_kernel"),
            (delegate* unmanaged[Cdecl]<int, int*, int>)NativeLibrary.GetExport(lib, "bert_emu_arg_sizes"),
            (delegate* unmanaged[Cdecl]<int, uint, uint, uint, uint, uint, uint, void**, int>)NativeLibrary.GetExport(lib, "bert_emu_launch"),
            (delegate* unmanaged[Cdecl]<byte*>)NativeLibrary.GetExport(lib, "bert_emu_error"));
        nint h = NewHandle();
        lock (Gate) Modules[h] = m;
        *module = h;
    });

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int CuModuleGetFunction(nint* function, nint module, byte* name)
    {
        Module? m;
        lock (Gate) Modules.TryGetValue(module, out m);
        if (m == null) return 400;                      // CUDA_ERROR_INVALID_HANDLE
        int k = m.Kernel(name);
        if (k < 0) return 500;                          // CUDA_ERROR_NOT_FOUND
        int* sizes = stackalloc int[64];
        int n = m.ArgSizes(k, sizes);
        nint h = NewHandle();
        lock (Gate) Functions[h] = new Function(m, k, Marshal.PtrToStringUTF8((nint)name) ?? "", new ReadOnlySpan<int>(sizes, n).ToArray());
        *function = h;
        return 0;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int CuModuleUnload(nint module)
    {
        Module? m;
        lock (Gate) { if (Modules.Remove(module, out m)) foreach (var f in Functions.Where(kv => kv.Value.Module == m).ToList()) Functions.Remove(f.Key); }
        if (m == null) return 400;
        NativeLibrary.Free(m.Library);
        return 0;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int CuFuncSetAttribute(nint function, int attribute, int value) => 0;

    /// <summary>A host function has no registers, local memory or shared memory to report: 0 for each (and 1024 threads).</summary>
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int CuFuncGetAttribute(int* value, int attribute, nint function)
    {
        lock (Gate) if (!Functions.ContainsKey(function)) return 400;   // CUDA_ERROR_INVALID_HANDLE
        *value = attribute == 0 ? 1024 : 0;
        return 0;
    }

    /// <summary>Copies the arguments (the caller reuses its buffers), then runs the kernel now or when the graph replays.</summary>
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int CuLaunchKernel(nint function, uint gx, uint gy, uint gz, uint bx, uint by, uint bz, uint shared, nint stream, void** args, void** extra) => Guard(() =>
    {
        Function? f;
        lock (Gate) Functions.TryGetValue(function, out f);
        if (f == null) throw new InvalidOperationException("launch of an unknown function handle");
        if (shared > DynamicSharedFloats * 4) throw new InvalidOperationException($"{f.Name} asks for {shared} bytes of dynamic shared memory; the emulation has {DynamicSharedFloats * 4}");
        var values = new byte[f.ArgSizes.Length][];
        for (int i = 0; i < values.Length; i++) values[i] = new ReadOnlySpan<byte>(args[i], f.ArgSizes[i]).ToArray();
        Enqueue(stream, () => Run(f, gx, gy, gz, bx, by, bz, values));
    });

    static readonly ConcurrentDictionary<string, (long Ticks, long Calls)> Profile = new();
    static readonly bool Profiling = Environment.GetEnvironmentVariable("BERT_CUDA_EMULATE_PROFILE") is "1" or "all";

    static void Timed(string name, Action body)
    {
        if (!Profiling) { body(); return; }
        long t0 = Stopwatch.GetTimestamp();
        body();
        long dt = Stopwatch.GetTimestamp() - t0;
        if (Profile.IsEmpty) AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            foreach (var (k, v) in Profile.OrderByDescending(kv => kv.Value.Ticks).Take(Environment.GetEnvironmentVariable("BERT_CUDA_EMULATE_PROFILE") == "all" ? int.MaxValue : 25))
                Console.Error.WriteLine($"emulation profile: {k,-40} {v.Ticks * 1000.0 / Stopwatch.Frequency,10:F0} ms {v.Calls,8} calls");
        };
        Profile.AddOrUpdate(name, (dt, 1), (_, v) => (v.Ticks + dt, v.Calls + 1));
    }

    static void Run(Function f, uint gx, uint gy, uint gz, uint bx, uint by, uint bz, byte[][] values) => Timed(f.Name, () => RunNow(f, gx, gy, gz, bx, by, bz, values));

    static void RunNow(Function f, uint gx, uint gy, uint gz, uint bx, uint by, uint bz, byte[][] values)
    {
        var handles = values.Select(v => GCHandle.Alloc(v, GCHandleType.Pinned)).ToArray();
        try
        {
            void** a = stackalloc void*[Math.Max(1, values.Length)];
            for (int i = 0; i < values.Length; i++) a[i] = (void*)handles[i].AddrOfPinnedObject();
            int r = f.Module.Launch(f.Index, gx, gy, gz, bx, by, bz, a);
            if (r == 3)
                throw new KernelFaultException(716, $"{f.Name}<<<({gx},{gy},{gz}), ({bx},{by},{bz})>>> made a misaligned access, which a GPU stops the kernel for (CUDA_ERROR_MISALIGNED_ADDRESS): {Marshal.PtrToStringUTF8((nint)f.Module.Error())}");
            if (r == 4)
                throw new KernelFaultException(719, $"{f.Name}<<<({gx},{gy},{gz}), ({bx},{by},{bz})>>> ran a warp operation that is undefined on a GPU: {Marshal.PtrToStringUTF8((nint)f.Module.Error())}");
            if (r != 0) throw new InvalidOperationException($"{f.Name}<<<({gx},{gy},{gz}), ({bx},{by},{bz})>>> cannot run in the emulation (code {r}: only 1-D blocks of 1..1024 threads on 2-D grids)");
        }
        finally { foreach (var h in handles) h.Free(); }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int CuStreamBeginCapture(nint stream, int mode)
    {
        lock (Gate) Capturing[stream] = new List<Action>();
        return 0;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int CuStreamEndCapture(nint stream, nint* graph)
    {
        List<Action>? ops;
        lock (Gate) { if (!Capturing.Remove(stream, out ops)) return 1; }
        nint h = NewHandle();
        lock (Gate) Graphs[h] = ops!;
        *graph = h;
        return 0;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int CuGraphInstantiate(nint* exec, nint graph, ulong flags) { *exec = graph; return 0; }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int CuGraphLaunch(nint exec, nint stream) => Guard(() =>
    {
        List<Action>? ops;
        lock (Gate) Graphs.TryGetValue(exec, out ops);
        if (ops == null) throw new InvalidOperationException("launch of an unknown graph");
        Enqueue(stream, () => { foreach (var op in ops) op(); });
    });

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int CuGraphDestroy(nint graph) { lock (Gate) Graphs.Remove(graph); return 0; }

    // ---------------- NVRTC: clang-14 for the host ----------------

    sealed class Program(string source, string name) { public readonly string Source = source, Name = name; public string Log = ""; public byte[] Image = []; }

    /// <summary>clang's "file:line:column: error: …" as NVRTC's "file(line): error: …".</summary>
    static readonly Regex ClangDiagnostic = new(@"^(?<file>[^:\n]+):(?<line>\d+):\d+: (?<kind>fatal error|error|warning)", RegexOptions.Multiline | RegexOptions.Compiled);
    static readonly Dictionary<nint, Program> Programs = new();
    static readonly byte* NvrtcErrorText = (byte*)Marshal.StringToHGlobalAnsi("NVRTC_ERROR_COMPILATION");

    static nint NvrtcExport(string name) => name switch
    {
        "nvrtcCreateProgram" => (nint)(delegate* unmanaged[Cdecl]<nint*, byte*, byte*, int, byte**, byte**, int>)&NvrtcCreateProgram,
        "nvrtcCompileProgram" => (nint)(delegate* unmanaged[Cdecl]<nint, int, byte**, int>)&NvrtcCompileProgram,
        "nvrtcGetPTXSize" or "nvrtcGetCUBINSize" => (nint)(delegate* unmanaged[Cdecl]<nint, nuint*, int>)&NvrtcGetImageSize,
        "nvrtcGetPTX" or "nvrtcGetCUBIN" => (nint)(delegate* unmanaged[Cdecl]<nint, byte*, int>)&NvrtcGetImage,
        "nvrtcGetProgramLogSize" => (nint)(delegate* unmanaged[Cdecl]<nint, nuint*, int>)&NvrtcGetLogSize,
        "nvrtcGetProgramLog" => (nint)(delegate* unmanaged[Cdecl]<nint, byte*, int>)&NvrtcGetLog,
        "nvrtcDestroyProgram" => (nint)(delegate* unmanaged[Cdecl]<nint*, int>)&NvrtcDestroyProgram,
        "nvrtcGetErrorString" => (nint)(delegate* unmanaged[Cdecl]<int, byte*>)&NvrtcGetErrorString,
        "nvrtcVersion" => (nint)(delegate* unmanaged[Cdecl]<int*, int*, int>)&NvrtcVersion,
        "nvrtcGetNumSupportedArchs" => (nint)(delegate* unmanaged[Cdecl]<int*, int>)&NvrtcOneArch,
        "nvrtcGetSupportedArchs" => (nint)(delegate* unmanaged[Cdecl]<int*, int>)&NvrtcArchs,
        _ => 0,
    };

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])] static int NvrtcVersion(int* major, int* minor) { *major = 13; *minor = 0; return 0; }
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])] static int NvrtcOneArch(int* n) { *n = 1; return 0; }
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])] static int NvrtcArchs(int* archs) { archs[0] = 80; return 0; }
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])] static byte* NvrtcGetErrorString(int result) => NvrtcErrorText;

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int NvrtcCreateProgram(nint* prog, byte* src, byte* name, int headers, byte** headerSources, byte** includeNames)
    {
        nint h = NewHandle();
        lock (Gate) Programs[h] = new Program(Marshal.PtrToStringUTF8((nint)src) ?? "", name == null ? "program.cu" : Marshal.PtrToStringUTF8((nint)name) ?? "program.cu");
        *prog = h;
        return 0;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int NvrtcCompileProgram(nint prog, int count, byte** options)
    {
        Program? p;
        lock (Gate) Programs.TryGetValue(prog, out p);
        if (p == null) return 5;                         // NVRTC_ERROR_INVALID_PROGRAM
        string dir = Directory.CreateTempSubdirectory("bert-cuda-emu-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "k.cpp"), HostProgram(p.Source, p.Name));
            var psi = new ProcessStartInfo(Compiler) { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in HostCompilerArguments.Concat(["k.cpp", "-lm", "-o", "k.so"])) psi.ArgumentList.Add(a);
            using var c = Process.Start(psi)!;
            var stdout = c.StandardOutput.ReadToEndAsync();
            string stderr = c.StandardError.ReadToEnd();
            c.WaitForExit();
            p.Log = ClangDiagnostic.Replace(stdout.Result + stderr, m => $"{m.Groups["file"].Value}({m.Groups["line"].Value}): {(m.Groups["kind"].Value == "warning" ? "warning" : "error")}");
            if (c.ExitCode != 0) return 6;               // NVRTC_ERROR_COMPILATION
            p.Image = File.ReadAllBytes(Path.Combine(dir, "k.so"));
            return 0;
        }
        catch (Exception e) { p.Log = $"the emulation could not run {Compiler}: {e.Message}"; return 6; }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>How the emulated NVRTC builds <see cref="HostProgram"/> (before the file names): a shared library, its typed
    /// accesses checked for alignment (the prelude's handler records the first misaligned one; the launch then fails).</summary>
    public static readonly string[] HostCompilerArguments = ["-x", "c++", "-std=c++17", "-O1", "-w", "-fsanitize=alignment", "-shared", "-fPIC"];

    static Program? Prog(nint prog) { lock (Gate) return Programs.GetValueOrDefault(prog); }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int NvrtcGetImageSize(nint prog, nuint* size) { if (Prog(prog) is not { } p) return 5; *size = (nuint)p.Image.Length; return 0; }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int NvrtcGetImage(nint prog, byte* dst) { if (Prog(prog) is not { } p) return 5; p.Image.CopyTo(new Span<byte>(dst, p.Image.Length)); return 0; }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int NvrtcGetLogSize(nint prog, nuint* size) { if (Prog(prog) is not { } p) return 5; *size = (nuint)Encoding.UTF8.GetByteCount(p.Log) + 1; return 0; }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int NvrtcGetLog(nint prog, byte* dst)
    {
        if (Prog(prog) is not { } p) return 5;
        int n = Encoding.UTF8.GetBytes(p.Log, new Span<byte>(dst, Encoding.UTF8.GetByteCount(p.Log)));
        dst[n] = 0;
        return 0;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int NvrtcDestroyProgram(nint* prog) { lock (Gate) Programs.Remove(*prog); *prog = 0; return 0; }

    // ---------------- cuBLAS: column-major products in double ----------------

    static nint CublasExport(string name) => name switch
    {
        "cublasCreate_v2" => (nint)(delegate* unmanaged[Cdecl]<nint*, int>)&CublasCreate,
        "cublasDestroy_v2" => (nint)(delegate* unmanaged[Cdecl]<nint, int>)&CuHandleOk,
        "cublasSetStream_v2" => (nint)(delegate* unmanaged[Cdecl]<nint, nint, int>)&CublasSetStream,
        "cublasSetMathMode" => (nint)(delegate* unmanaged[Cdecl]<nint, int, int>)&CublasSetMathMode,
        "cublasSetWorkspace_v2" => (nint)(delegate* unmanaged[Cdecl]<nint, void*, nuint, int>)&CublasSetWorkspace,
        "cublasGetVersion_v2" => (nint)(delegate* unmanaged[Cdecl]<nint, int*, int>)&CublasGetVersion,
        "cublasGemmEx" => (nint)(delegate* unmanaged[Cdecl]<nint, int, int, int, int, int, void*, void*, int, int, void*, int, int, void*, void*, int, int, int, int, int>)&CublasGemmEx,
        "cublasGemmStridedBatchedEx" => (nint)(delegate* unmanaged[Cdecl]<nint, int, int, int, int, int, void*, void*, int, int, long, void*, int, int, long, void*, void*, int, int, long, int, int, int, int>)&CublasGemmStridedBatchedEx,
        "cublasGemmBatchedEx" => (nint)(delegate* unmanaged[Cdecl]<nint, int, int, int, int, int, void*, ulong, int, int, ulong, int, int, void*, ulong, int, int, int, int, int, int>)&CublasGemmBatchedEx,
        _ => 0,
    };

    static readonly ConcurrentDictionary<nint, nint> BlasStreams = new();

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])] static int CublasCreate(nint* h) { *h = NewHandle(); return 0; }
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])] static int CublasSetStream(nint h, nint stream) { BlasStreams[h] = stream; return 0; }
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])] static int CublasSetMathMode(nint h, int mode) => 0;
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])] static int CublasSetWorkspace(nint h, void* p, nuint bytes) => 0;
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])] static int CublasGetVersion(nint h, int* v) { *v = 130000; return 0; }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int CublasGemmEx(nint h, int ta, int tb, int m, int n, int k, void* alpha, void* A, int aType, int lda, void* B, int bType, int ldb,
        void* beta, void* C, int cType, int ldc, int compute, int algo) =>
        Gemm(h, ta, tb, m, n, k, *(float*)alpha, (nint)A, aType, lda, 0, (nint)B, bType, ldb, 0, *(float*)beta, (nint)C, cType, ldc, 0, 1, compute: compute);

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int CublasGemmStridedBatchedEx(nint h, int ta, int tb, int m, int n, int k, void* alpha, void* A, int aType, int lda, long sA,
        void* B, int bType, int ldb, long sB, void* beta, void* C, int cType, int ldc, long sC, int batch, int compute, int algo) =>
        Gemm(h, ta, tb, m, n, k, *(float*)alpha, (nint)A, aType, lda, sA, (nint)B, bType, ldb, sB, *(float*)beta, (nint)C, cType, ldc, sC, batch, compute: compute);

    // The pointer arrays are read when the product runs in stream order, as on a GPU (a kernel before it may write them).
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int CublasGemmBatchedEx(nint h, int ta, int tb, int m, int n, int k, void* alpha, ulong A, int aType, int lda,
        ulong B, int bType, int ldb, void* beta, ulong C, int cType, int ldc, int batch, int compute, int algo) =>
        Gemm(h, ta, tb, m, n, k, *(float*)alpha, (nint)A, aType, lda, 0, (nint)B, bType, ldb, 0, *(float*)beta, (nint)C, cType, ldc, 0, batch, arrays: true, compute: compute);

    // ---------------- cuBLASLt: descriptors kept on the host, cublasLtMatmul through the same product ----------------

    sealed class LtDesc { public int Compute, TransA, TransB, BiasType = -1; public uint Epilogue = 1; public nint Bias; }
    sealed class LtLayout { public int Type; public ulong Rows, Cols; public long Ld; }
    static readonly ConcurrentDictionary<nint, LtDesc> LtDescs = new();
    static readonly ConcurrentDictionary<nint, LtLayout> LtLayouts = new();

    static nint CublasLtExport(string name) => name switch
    {
        "cublasLtCreate" => (nint)(delegate* unmanaged[Cdecl]<nint*, int>)&CublasCreate,
        "cublasLtDestroy" => (nint)(delegate* unmanaged[Cdecl]<nint, int>)&CuHandleOk,
        "cublasLtMatmulDescCreate" => (nint)(delegate* unmanaged[Cdecl]<nint*, int, int, int>)&LtDescCreate,
        "cublasLtMatmulDescDestroy" => (nint)(delegate* unmanaged[Cdecl]<nint, int>)&LtDescDestroy,
        "cublasLtMatmulDescSetAttribute" => (nint)(delegate* unmanaged[Cdecl]<nint, int, void*, nuint, int>)&LtDescSet,
        "cublasLtMatrixLayoutCreate" => (nint)(delegate* unmanaged[Cdecl]<nint*, int, ulong, ulong, long, int>)&LtLayoutCreate,
        "cublasLtMatrixLayoutDestroy" => (nint)(delegate* unmanaged[Cdecl]<nint, int>)&LtLayoutDestroy,
        "cublasLtMatrixLayoutSetAttribute" => (nint)(delegate* unmanaged[Cdecl]<nint, int, void*, nuint, int>)&LtLayoutSet,
        "cublasLtMatmulPreferenceCreate" => (nint)(delegate* unmanaged[Cdecl]<nint*, int>)&CublasCreate,
        "cublasLtMatmulPreferenceDestroy" => (nint)(delegate* unmanaged[Cdecl]<nint, int>)&CuHandleOk,
        "cublasLtMatmulPreferenceSetAttribute" => (nint)(delegate* unmanaged[Cdecl]<nint, int, void*, nuint, int>)&LtPreferenceSet,
        "cublasLtMatmulAlgoGetHeuristic" => (nint)(delegate* unmanaged[Cdecl]<nint, nint, nint, nint, nint, nint, nint, int, CublasLtMatmulHeuristicResult*, int*, int>)&LtHeuristic,
        "cublasLtMatmul" => (nint)(delegate* unmanaged[Cdecl]<nint, nint, void*, void*, nint, void*, nint, void*, void*, nint, void*, nint, CublasLtMatmulAlgo*, void*, nuint, nint, int>)&LtMatmul,
        _ => 0,
    };

    const int LtInvalidValue = 7, LtNotSupported = 15;

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int LtDescCreate(nint* d, int compute, int scale)
    {
        if (scale != (int)CudaDataType.R32F) return LtNotSupported;
        *d = NewHandle();
        LtDescs[*d] = new LtDesc { Compute = compute };
        return 0;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int LtDescDestroy(nint d) => LtDescs.TryRemove(d, out _) ? 0 : LtInvalidValue;

    /// <summary>The attributes the runtime sets, each checked for its size; any other is refused (the emulation does not do it).</summary>
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int LtDescSet(nint d, int attribute, void* value, nuint size)
    {
        if (!LtDescs.TryGetValue(d, out var desc)) return LtInvalidValue;
        var a = (CublasLtMatmulDescAttribute)attribute;
        if ((int)size != CublasLt.AttributeSize(a)) return LtInvalidValue;
        switch (a)
        {
            case CublasLtMatmulDescAttribute.TransA: desc.TransA = *(int*)value; break;
            case CublasLtMatmulDescAttribute.TransB: desc.TransB = *(int*)value; break;
            case CublasLtMatmulDescAttribute.Epilogue: desc.Epilogue = *(uint*)value; break;
            case CublasLtMatmulDescAttribute.BiasPointer: desc.Bias = *(nint*)value; break;
            case CublasLtMatmulDescAttribute.BiasDataType: desc.BiasType = *(int*)value; break;
            default: return LtNotSupported;
        }
        return 0;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int LtLayoutCreate(nint* l, int type, ulong rows, ulong cols, long ld)
    {
        if (ld < (long)Math.Max(1UL, rows)) return LtInvalidValue;   // column-major: ld at least the rows
        *l = NewHandle();
        LtLayouts[*l] = new LtLayout { Type = type, Rows = rows, Cols = cols, Ld = ld };
        return 0;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int LtLayoutDestroy(nint l) => LtLayouts.TryRemove(l, out _) ? 0 : LtInvalidValue;

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int LtLayoutSet(nint l, int attribute, void* value, nuint size) => LtNotSupported;   // column order, one matrix: the defaults

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int LtPreferenceSet(nint p, int attribute, void* value, nuint size) =>
        (int)size == CublasLt.AttributeSize((CublasLtMatmulPreferenceAttribute)attribute) ? 0 : LtInvalidValue;

    /// <summary>What the emulated cublasLtMatmul does: fp32 or bf16 operands (both alike), an fp32 C and D, no epilogue or a
    /// bias (fp32), op(A) m×k and op(B) k×n against D m×n.</summary>
    static bool LtSupports(LtDesc d, LtLayout a, LtLayout b, LtLayout c, LtLayout dl)
    {
        if (d.Epilogue is not ((uint)CublasLtEpilogue.Default or (uint)CublasLtEpilogue.Bias)) return false;
        if (d.BiasType is not (-1 or (int)CudaDataType.R32F)) return false;
        if (a.Type != b.Type || a.Type is not ((int)CudaDataType.R32F or (int)CudaDataType.R16BF)) return false;
        if (c.Type != (int)CudaDataType.R32F || dl.Type != c.Type || c.Rows != dl.Rows || c.Cols != dl.Cols) return false;
        ulong m = dl.Rows, n = dl.Cols;
        (ulong ar, ulong ac) = d.TransA == 0 ? (a.Rows, a.Cols) : (a.Cols, a.Rows);
        (ulong br, ulong bc) = d.TransB == 0 ? (b.Rows, b.Cols) : (b.Cols, b.Rows);
        return ar == m && bc == n && ac == br;
    }

    /// <summary>The environment variable that makes the emulated cuBLASLt decline what a real one might: <c>decline-bf16</c>,
    /// every product with bf16 operands (its heuristic finds no algorithm), so that the schedules' fallback after the
    /// operands' bf16 copies are made runs under the emulation too.</summary>
    public const string LtVariable = "BERT_CUDA_EMULATE_LT";

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int LtHeuristic(nint h, nint desc, nint a, nint b, nint c, nint d, nint pref, int requested, CublasLtMatmulHeuristicResult* results, int* returned)
    {
        *returned = 0;
        if (requested < 1 || !LtDescs.TryGetValue(desc, out var dd) || !LtLayouts.TryGetValue(a, out var la) || !LtLayouts.TryGetValue(b, out var lb)
            || !LtLayouts.TryGetValue(c, out var lc) || !LtLayouts.TryGetValue(d, out var ld)) return LtInvalidValue;
        if (!LtSupports(dd, la, lb, lc, ld)) return LtNotSupported;
        if (la.Type == (int)CudaDataType.R16BF && Environment.GetEnvironmentVariable(LtVariable) == "decline-bf16") return LtNotSupported;
        results[0] = default;
        results[0].WavesCount = 1f;
        *returned = 1;
        return 0;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    static int LtMatmul(nint h, nint desc, void* alpha, void* A, nint aDesc, void* B, nint bDesc, void* beta, void* C, nint cDesc, void* D, nint dDesc,
        CublasLtMatmulAlgo* algo, void* workspace, nuint workspaceBytes, nint stream)
    {
        if (!LtDescs.TryGetValue(desc, out var dd) || !LtLayouts.TryGetValue(aDesc, out var la) || !LtLayouts.TryGetValue(bDesc, out var lb)
            || !LtLayouts.TryGetValue(cDesc, out var lc) || !LtLayouts.TryGetValue(dDesc, out var ld)) return LtInvalidValue;
        if (!LtSupports(dd, la, lb, lc, ld)) return LtNotSupported;
        float b0 = *(float*)beta;
        bool bias = dd.Epilogue == (uint)CublasLtEpilogue.Bias;
        if (bias && (dd.Bias == 0 || dd.Bias % 16 != 0)) return LtInvalidValue;
        int m = (int)ld.Rows, n = (int)ld.Cols, k = (int)(dd.TransA == 0 ? la.Cols : la.Rows);
        if (C != D && b0 != 0)
        {
            // Out of place: C copied into D column by column in stream order (D's padding untouched), then the product adds
            // into D in place.
            long cBytes = ((n - 1) * lc.Ld + m) * 4L, dBytes = ((n - 1) * ld.Ld + m) * 4L;
            if ((nint)C < (nint)D + (nint)dBytes && (nint)D < (nint)C + (nint)cBytes) return LtInvalidValue;   // overlapping C and D
            nint src = (nint)C, dst = (nint)D;
            long ldC = lc.Ld, ldD = ld.Ld;
            int copied = Guard(() => Enqueue(stream, () =>
            {
                for (long j = 0; j < n; j++)
                    Buffer.MemoryCopy((void*)(src + (nint)(j * ldC * 4)), (void*)(dst + (nint)(j * ldD * 4)), m * 4L, m * 4L);
            }));
            if (copied != 0) return copied;
        }
        return Gemm(h, dd.TransA, dd.TransB, m, n, k, *(float*)alpha, (nint)A, la.Type, (int)la.Ld, 0, (nint)B, lb.Type, (int)lb.Ld, 0,
            b0, (nint)D, ld.Type, (int)ld.Ld, 0, 1, compute: dd.Compute, stream: stream, bias: bias ? dd.Bias : 0);
    }

    /// <summary>Column-major C = alpha·op(A)·op(B) + beta·C per batch, the sums in double (beta = 0 ignores what C held, as
    /// cuBLAS does). CUBLAS_COMPUTE_32F_FAST_16BF rounds fp32 operands to bf16 (nearest even) first, as the tensor cores
    /// take them. <paramref name="bias"/> (cuBLASLt's bias epilogue): one fp32 per row of C, added before C is stored.</summary>
    static int Gemm(nint h, int ta, int tb, int m, int n, int k, float alpha, nint A, int aType, int lda, long sA, nint B, int bType, int ldb, long sB,
        float beta, nint C, int cType, int ldc, long sC, int batch, bool arrays = false, int compute = (int)CublasComputeType.Compute32F,
        nint? stream = null, nint bias = 0)
    {
        bool round16 = compute == (int)CublasComputeType.Compute32FFast16BF;
        if (cType is not ((int)CudaDataType.R32F or (int)CudaDataType.R16BF) || (cType == (int)CudaDataType.R16BF && aType != (int)CudaDataType.R16BF) || aType is not ((int)CudaDataType.R32F or (int)CudaDataType.R16BF) || bType is not ((int)CudaDataType.R32F or (int)CudaDataType.R16BF))
            return 15;                                   // CUBLAS_STATUS_NOT_SUPPORTED
        return Guard(() => Enqueue(stream ?? BlasStreams.GetValueOrDefault(h), () => Timed($"gemm {m}x{n}x{k}", () =>
        {
            int aSize = aType == (int)CudaDataType.R16BF ? 2 : 4, bSize = bType == (int)CudaDataType.R16BF ? 2 : 4, cSize = cType == (int)CudaDataType.R16BF ? 2 : 4;
            // op(A) as m rows of k and op(B) as n rows of k, in double, so that every sum is a contiguous dot product.
            var ra = new double[(long)m * k];
            var rb = new double[(long)n * k];
            for (int q = 0; q < batch; q++)
            {
                nint a = arrays ? ((nint*)A)[q] : A + (nint)(q * sA * aSize), b = arrays ? ((nint*)B)[q] : B + (nint)(q * sB * bSize);
                nint c = arrays ? ((nint*)C)[q] : C + (nint)(q * sC * cSize);
                for (int i = 0; i < m; i++)
                    for (int p = 0; p < k; p++)
                        ra[(long)i * k + p] = Load(a, ta == 0 ? i + (long)p * lda : p + (long)i * lda, aSize, round16);      // op(A)[i, p]
                for (int j = 0; j < n; j++)
                    for (int p = 0; p < k; p++)
                        rb[(long)j * k + p] = Load(b, tb == 0 ? p + (long)j * ldb : j + (long)p * ldb, bSize, round16);      // op(B)[p, j]
                for (int j = 0; j < n; j++)
                {
                    var bj = new ReadOnlySpan<double>(rb, j * k, k);
                    for (int i = 0; i < m; i++)
                    {
                        double s = System.Numerics.Tensors.TensorPrimitives.Dot(new ReadOnlySpan<double>(ra, i * k, k), bj);
                        s *= alpha;
                        if (bias != 0) s += ((float*)bias)[i];   // cuBLASLt's bias epilogue: added before C is stored
                        long at = i + (long)j * ldc;
                        if (cSize == 2)
                        {
                            // bf16 C: the fp32 result rounded to nearest even, as cuBLAS stores it
                            ushort* cij = (ushort*)c + at;
                            float v = beta == 0 ? (float)s : (float)(s + beta * (double)BitConverter.UInt32BitsToSingle((uint)*cij << 16));
                            *cij = Checkpoints.SafeTensors.ToBFloat16(v);
                        }
                        else
                        {
                            float* cij = (float*)c + at;
                            *cij = beta == 0 ? (float)s : (float)(s + beta * (double)*cij);
                        }
                    }
                }
            }
        })));
    }

    static float Load(nint p, long i, int size, bool round16) => size == 2 ? BitConverter.UInt32BitsToSingle((uint)((ushort*)p)[i] << 16)
        : round16 ? Checkpoints.SafeTensors.FromBFloat16(Checkpoints.SafeTensors.ToBFloat16(((float*)p)[i])) : ((float*)p)[i];
}
