namespace Bert.Runtime.Cuda;

/// <summary>How a CUDA model's matrix products treat their fp32 operands (everything else is fp32 in every mode).</summary>
public enum CudaPrecision
{
    /// <summary>Exact fp32 products (CUDA cores).</summary>
    Fp32,
    /// <summary>TF32 tensor cores: operands rounded to 10-bit mantissas, fp32 accumulation (about 1e-3 relative).</summary>
    Tf32,
    /// <summary>Operands rounded to bf16 (8-bit mantissas) for the linear layers, fp32 accumulation and outputs; attention's
    /// products in TF32. fp32 master weights, activations and optimizer state.</summary>
    Bf16,
}

/// <summary>What a generated CUDA schedule implements: the model's ops as launches on a <see cref="CudaExec"/>, and the
/// CUDA C source of its fused element-wise kernels.</summary>
public interface ICudaProgram
{
    /// <summary>The model's fused kernels (k{id}_forward / k{id}_backward), compiled with <see cref="CudaKernels.Source"/>.</summary>
    string Source { get; }
    void Forward(CudaExec ex);
    void Backward(CudaExec ex);
}

/// <summary>One step's state on the device as generated CUDA schedules see it: device pointers (CUdeviceptr as ulong) into
/// the arena laid out by the memory plan, the flat parameters and gradients, and the integer inputs; and the launches of
/// the structured kernels, the fused kernels and cuBLAS, all on one stream, in schedule order.</summary>
public sealed unsafe class CudaExec
{
    const int Block = CudaKernels.Block;
    readonly Dictionary<string, nint> _functions = new();
    readonly KernelArguments _args = new(512);
    internal nint Module, Stream;
    internal Cublas Blas = null!;
    internal ulong Arena, Params, Grads, Scratch, Count;
    internal long ScratchFloats;
    internal long[] Offsets = [], Lengths = [];
    internal ulong[] IntPtrs = [];
    internal int MaxGrid = 65535;

    public int Batch { get; internal set; }
    public int Seq { get; internal set; }
    public int Rows { get; internal set; }
    public ulong Seed { get; private set; }
    /// <summary>Where the kernels read the dropout seed (8 bytes of device memory, written by <see cref="SetSeed"/> in stream
    /// order): a replayed graph reads each step's seed instead of the one it was captured with.</summary>
    public ulong SeedPointer { get; internal set; }

    /// <summary>Sets the dropout seed of the launches that follow, in stream order (a one-thread kernel: no host memory, no wait).</summary>
    internal void SetSeed(ulong seed)
    {
        Seed = seed;
        LaunchKeeping("rt_set_seed", 1, Args().Add(SeedPointer).Add(seed), 32);
    }
    public bool Training { get; internal set; }
    public int CurrentOp { get; private set; } = -1;
    /// <summary>Called with each op's index as the schedules run (per-op checks and profiling).</summary>
    public Action<int>? OnOp { get; set; }

    public void Op(int id) { CurrentOp = id; OnOp?.Invoke(id); }

    /// <summary>Called before each kernel launch and each cuBLAS product with a label (the kernel's name, or the product's
    /// type and shape): the self-test's per-kernel profile.</summary>
    public Action<string>? OnLaunch { get; set; }

    public ulong Buf(int id) => Arena + (ulong)Offsets[id] * 4;
    public ulong Param(long offset) => Params + (ulong)offset * 4;
    public ulong Grad(long offset) => Grads == 0 ? throw new InvalidOperationException("This CUDA model has no gradient buffer; bind it for training.") : Grads + (ulong)offset * 4;
    public ulong Ints(int input) => IntPtrs[input];

    /// <summary>Clears buffer <paramref name="id"/> (a gradient that the ops after it add into).</summary>
    public void Zero(int id)
    {
        ForgetOperands();
        CudaDriver.MemsetD8Async(Buf(id), 0, (ulong)Lengths[id] * 4, Stream);
    }

    /// <summary>The argument list for the next launch (reused; valid until the next call of Args).</summary>
    public KernelArguments Args() { _args.Clear(); return _args; }

    nint Fn(string name)
    {
        if (!_functions.TryGetValue(name, out nint f))
            _functions[name] = f = CudaDriver.ModuleGetFunction(Module, name);
        return f;
    }

    uint Grid(long threads) => (uint)Math.Clamp((threads + Block - 1) / Block, 1, MaxGrid);

    /// <summary>A launch that may write anything: the bf16 operands the slots hold are forgotten.</summary>
    void Launch(string name, long threads, KernelArguments args, uint block = Block)
    {
        ForgetOperands();
        LaunchKeeping(name, Grid(threads), args, block);
    }

    void LaunchBlocks(string name, Dim3 grid, KernelArguments args, uint block = Block)
    {
        ForgetOperands();
        LaunchKeeping(name, grid, args, block);
    }

    /// <summary>A launch that writes only a bf16 operand slot (the conversions): what the slots hold stays known.</summary>
    void LaunchKeeping(string name, Dim3 grid, KernelArguments args, uint block = Block)
    {
        OnLaunch?.Invoke(name);
        CudaDriver.LaunchKernel(Fn(name), grid, block, 0, Stream, args);
    }

    /// <summary>A generated fused kernel over n elements with <paramref name="threads"/> threads wanted (n for forward;
    /// the broadcast column count for a backward that sums over rows).</summary>
    public void Pointwise(string kernel, long n, long threads, KernelArguments args)
    {
        if (n == 0) { DropPendingSlot(); return; }
        Launch(kernel, threads, args);
        TakePendingSlot();
    }

    /// <summary>For a fused backward that writes a product's output gradient <paramref name="dx"/> (rows × cols, packed) just
    /// before that product's backward: in bf16 (with <see cref="Bf16Shadows"/>), operand slot 0, where the kernel also writes
    /// the gradient rounded to bf16 and which the product's two backward products then read as if they had rounded dx
    /// there themselves (the slot remembers it after the launch); else 0 (the kernel writes no copy).</summary>
    public ulong Grad16(ulong dx, long rows, int cols)
    {
        DropPendingSlot();
        return SlotCopies ? PendSlot(0, dx, rows, cols) : 0;
    }

    /// <summary>For a kernel that writes activation <paramref name="y"/> (rows × cols, packed) in full, when y is a product's
    /// operand (shadow <paramref name="k"/>): where the kernel also writes y rounded to bf16, or 0 for nowhere. In bf16 with
    /// <see cref="Bf16Shadows"/>: y's shadow, when this forward keeps them (a training binding; the products and the
    /// backward then read it as <see cref="Shadow"/>); otherwise, when the next op is the product that reads y as operand
    /// <paramref name="slot"/> (0: A, 1: B; -1: it is not next), that operand slot, which the product then takes as if it had
    /// rounded y there itself (the slot remembers it after the launch). No pass over y to round it either way.</summary>
    public ulong Out16(int k, ulong y, long rows, int cols, int slot)
    {
        DropPendingSlot();
        if (_shadowsMade && ShadowsOn) { _pendingSlot.Shadow = k; return ShadowAt(k); }
        return slot >= 0 && SlotCopies ? PendSlot(slot, y, rows, cols) : 0;
    }

    /// <summary>In bf16 with <see cref="Bf16Shadows"/>: a value that only products read, from the bf16 copy its kernel writes
    /// for them, is not written in fp32 at all (<see cref="Out32"/>, <see cref="Grad32"/>): BERT's GELU output in the forward,
    /// the products' output gradients in the backward. On by default; off to compare or to read those buffers back. Change
    /// it between steps only.</summary>
    public bool SkipUnreadFp32 { get; set; } = true;

    /// <summary>Per buffer of the memory plan, from its last write: 0 written in fp32; 1 not (its bf16 copy went to an operand
    /// slot, gone since); k + 2 not, its bf16 copy is shadow k; <see cref="Folded"/> never written (a product's output whose
    /// sum with the bias the product wrote instead, <see cref="GemmBias"/>).</summary>
    int[] _fp32Skipped = [];

    const int Folded = -1;

    void MarkFp32(int id, int state) => _fp32Skipped[id] = state;

    /// <summary>The fp32 destination of a fused kernel's output <paramref name="id"/> (rows × cols; shadow <paramref name="k"/>)
    /// that products alone read (Plan.Bf16OnlyOutput), or 0 when they will all take the bf16 copy the kernel writes
    /// (<see cref="Out16"/>, called after this for the same launch): in training the shadow; otherwise, when
    /// <paramref name="onlyNext"/> (its one reader is the product right after, operand <paramref name="slot"/>), that operand slot.</summary>
    public ulong Out32(int id, int k, long rows, int cols, int slot, bool onlyNext)
    {
        if (SkipUnreadFp32 && _shadowsMade && ShadowsOn)
        {
            _shadowsOnly = true;
            MarkFp32(id, k + 2);
            return 0;
        }
        if (SkipUnreadFp32 && onlyNext && slot >= 0 && SlotTakes(rows, cols))
        {
            MarkFp32(id, 1);
            return 0;
        }
        MarkFp32(id, 0);
        return Buf(id);
    }

    /// <summary>The fp32 destination of a product's output gradient <paramref name="id"/> (rows × cols) written by the fused
    /// backward right before that product's backward (Plan.GradientToSlot), or 0 when the product will take the bf16 copy the
    /// kernel writes into its operand slot (<see cref="Grad16"/>, called after this for the same launch) for both of its
    /// products, which then read nothing else of it.</summary>
    public ulong Grad32(int id, long rows, int cols)
    {
        if (SkipUnreadFp32 && SlotTakes(rows, cols)) { MarkFp32(id, 1); return 0; }
        MarkFp32(id, 0);
        return Buf(id);
    }

    /// <summary>Whether buffer <paramref name="id"/> can be read back: written in fp32, or its bf16 copy kept in a shadow.</summary>
    public bool Readable(int id) => _fp32Skipped[id] is not (1 or Folded);

    /// <summary>Whether buffer <paramref name="id"/>, a product's output, was never written: the product added its bias and wrote
    /// the sum instead (<see cref="GemmBias"/>).</summary>
    internal bool FoldedIntoBias(int id) => _fp32Skipped[id] == Folded;

    /// <summary>The shadow holding buffer <paramref name="id"/>'s only copy (bf16), or -1 when it was written in fp32.</summary>
    internal int Fp32SkippedShadow(int id) => _fp32Skipped[id] >= 2 ? _fp32Skipped[id] - 2 : -1;

    /// <summary>Shadow <paramref name="k"/>'s address (a buffer whose fp32 write was skipped is read back from it).</summary>
    internal ulong ShadowAddress(int k) => ShadowAt(k);

    /// <summary>Whether an operand slot takes a rows × cols copy (<see cref="PendSlot"/> with a source).</summary>
    bool SlotTakes(long rows, int cols) => SlotCopies && rows > 0 && cols > 0 && rows * cols <= GemmSlot;

    /// <summary>Whether a kernel may write a product's operand into an operand slot for it (<see cref="Grad16"/>, <see cref="Out16"/>).</summary>
    bool SlotCopies => Bf16Shadows && Precision == CudaPrecision.Bf16 && !Bf16InCublas && GemmScratch != 0;

    ulong PendSlot(int slot, ulong src, long rows, int cols)
    {
        if (src == 0 || rows <= 0 || cols <= 0 || rows * cols > GemmSlot) return 0;
        _pendingSlot = (slot, (src, src + (ulong)(rows * cols) * 4, (int)rows, cols, cols), -1);
        return GemmScratch + (ulong)(slot * GemmSlot) * 2;
    }

    /// <summary>The operand slot (or the shadow) holds what the last launch wrote there for <see cref="Grad16"/> or
    /// <see cref="Out16"/>.</summary>
    void TakePendingSlot()
    {
        if (_pendingSlot.Held.Src != 0) _held[_pendingSlot.Slot] = _pendingSlot.Held;
        if (_pendingSlot.Shadow >= 0 && _pendingSlot.Shadow < _shadowWritten.Length) _shadowWritten[_pendingSlot.Shadow] = true;
        DropPendingSlot();
    }

    /// <summary>No launch writes a bf16 copy for <see cref="Grad16"/> or <see cref="Out16"/>: a kernel given a destination
    /// that wrote none (a path without the copy, or nothing to launch), or a new destination being chosen.</summary>
    void DropPendingSlot() => _pendingSlot = NoPending;

    static readonly (int, (ulong, ulong, int, int, int), int) NoPending = (0, default, -1);
    (int Slot, (ulong Src, ulong End, int Rows, int Cols, int Ld) Held, int Shadow) _pendingSlot = NoPending;
    /// <summary>Per shadow: this forward's producer wrote it (<see cref="Out16"/> on a kernel that may or may not write it,
    /// attention); <see cref="ToShadow"/> then converts nothing.</summary>
    bool[] _shadowWritten = [];

    /// <summary>Rows per chunk of the broadcast sums of a fused backward (<see cref="PointwiseRows"/>).</summary>
    public const int PointwiseRowChunk = 32;

    /// <summary>A generated fused backward with broadcast inputs (k{id}_backward_rows): n elements as rows of nb columns,
    /// one thread per (column, chunk of <see cref="PointwiseRowChunk"/> rows) writing partial sums of each broadcast gradient
    /// to the scratch, then the partials added into <paramref name="broadcastGrads"/> (0: not wanted) in chunk order.
    /// <paramref name="dx16"/>: for a kernel that takes, last, the bf16 copy of a product's output gradient (from
    /// <see cref="Grad16"/>; 0 for none), else null. <paramref name="vectorPath"/>: the kernel has a vector path (four
    /// columns a thread, CudaEmitter's HasVectorPath), so a quarter of the threads are launched (its scalar loop strides
    /// over the columns if the sizes or pointers turn it down).</summary>
    public void PointwiseRows(string kernel, long n, long nb, KernelArguments args, ulong[] broadcastGrads, ulong? dx16, bool vectorPath)
    {
        if (n == 0 || nb == 0) { DropPendingSlot(); return; }
        long rows = n / nb, chunks = (rows + PointwiseRowChunk - 1) / PointwiseRowChunk;
        RequireScratch(broadcastGrads.Length * chunks * nb, "a fused backward");
        args.Add(Scratch).Add(PointwiseRowChunk);
        if (dx16 is { } d16) args.Add(d16);
        LaunchBlocks(kernel, new Dim3(Grid(vectorPath ? (nb + 3) / 4 : nb), (uint)chunks), args);
        // The column sums write the broadcast (parameter) gradients only: neither the slot nor what it copies.
        for (int s = 0; s < broadcastGrads.Length; s++)
            if (broadcastGrads[s] != 0)
                LaunchBlocks("rt_colsum_finish", (uint)((nb + 31) / 32), Args().Add(broadcastGrads[s]).Add(Scratch + (ulong)(s * chunks * nb) * 4).Add((int)nb).Add((int)chunks), 1024);
        TakePendingSlot();
    }

    /// <summary>Row-major C(M×N) = alpha·op(A)·op(B) + beta·C through cuBLAS, fp32 accumulation and fp32 C; the operands in
    /// fp32 (exact, or TF32 tensor cores by the math mode), or, in <see cref="CudaPrecision.Bf16"/>, rounded to bf16 first.</summary>
    /// <param name="a16">In bf16 precision, A already in bf16 (packed, <paramref name="lda"/> its row length): the shadow of an
    /// activation (<see cref="ToShadow"/>, <see cref="Shadow"/>); 0: rounded here. Ignored in other precisions.</param>
    /// <param name="b16">The same for B.</param>
    /// <param name="c16">C written in bf16 (β = 0; <see cref="Store16"/> said so: bf16 precision only), ldc in bf16 elements.</param>
    public void Gemm(bool transA, bool transB, int M, int N, int K, float alpha, ulong A, int lda, ulong B, int ldb, float beta, ulong C, int ldc,
        ulong a16 = 0, ulong b16 = 0, bool c16 = false)
    {
        if (c16 && (beta != 0f || Precision != CudaPrecision.Bf16 || Bf16InCublas))
            throw new InvalidOperationException($"A {M}×{N}×{K} product was asked for a bf16 output with beta {beta} in {Precision}{(Bf16InCublas ? " (rounded by cuBLAS)" : "")}; this is a bug in the generated schedule.");
        if (M == 0 || N == 0) return;
        if (K == 0)
        {
            // C = beta·C: nothing to add; β = 0 (a gradient's first write) clears C.
            if (beta == 1f) return;
            if (beta != 0f || ldc != N) throw new InvalidOperationException("A product over an empty dimension must accumulate (beta = 1) or write a packed C (beta = 0).");
            ForgetOperands();
            CudaDriver.MemsetD8Async(C, 0, (ulong)M * (ulong)N * 4, Stream);
            return;
        }
        if (Precision != CudaPrecision.Bf16 || Bf16InCublas)
        {
            if (_shadowsOnly)
                throw new InvalidOperationException($"The precision changed between a forward and its backward ({Precision}{(Bf16InCublas ? ", rounded by cuBLAS" : "")} now), and that forward left some activations in bf16 alone (SkipUnreadFp32); change the precision between steps only.");
            // fp32 operands as they are: exact or TF32 by the math mode, or rounded to bf16 by cuBLAS itself
            // (CUBLAS_COMPUTE_32F_FAST_16BF: no conversion launches, no operand slots).
            bool fast16 = Precision == CudaPrecision.Bf16;
            OnLaunch?.Invoke($"gemm {(fast16 ? "bf16-cublas" : Precision == CudaPrecision.Tf32 ? "tf32" : "fp32")} {(transA ? 'T' : 'N')}{(transB ? 'T' : 'N')} {M}x{N}x{K}");
            ForgetOperands();
            Blas.Gemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, CudaDataType.R32F,
                computeType: fast16 ? CublasComputeType.Compute32FFast16BF : CublasComputeType.Compute32F);
            return;
        }
        (a16, b16, int ldA16, int ldB16) = Bf16Operands(transA, transB, M, N, K, A, lda, B, ldb, a16, b16);
        OnLaunch?.Invoke($"gemm bf16 {(transA ? 'T' : 'N')}{(transB ? 'T' : 'N')} {M}x{N}x{K}{(c16 ? " out bf16" : "")}");
        Blas.Gemm(transA, transB, M, N, K, alpha, a16, ldA16, b16, ldB16, beta, C, ldc, CudaDataType.R16BF, c16 ? CudaDataType.R16BF : CudaDataType.R32F);
        Wrote(C, M, N, ldc);
    }

    /// <summary>A bf16 product's operands: the packed bf16 copies given (shadows, slots a kernel wrote), or else rounded into
    /// the operand slots (or the weights' bf16 copy), with their row lengths.</summary>
    (ulong A16, ulong B16, int Lda16, int Ldb16) Bf16Operands(bool transA, bool transB, int M, int N, int K, ulong A, int lda, ulong B, int ldb, ulong a16, ulong b16)
    {
        int rowsA = transA ? K : M, colsA = transA ? M : K, rowsB = transB ? N : K, colsB = transB ? K : N;
        if ((a16 == 0 && (long)rowsA * colsA > GemmSlot) || (b16 == 0 && (long)rowsB * colsB > GemmSlot))
            throw new InvalidOperationException($"The bf16 operand scratch holds {GemmSlot} elements but a {M}×{N}×{K} product needs {(long)rowsA * colsA} and {(long)rowsB * colsB}; this is a bug in CudaModel's sizing.");
        if ((a16 != 0 && lda != colsA) || (b16 != 0 && ldb != colsB))
            throw new InvalidOperationException($"A {M}×{N}×{K} product was given a packed bf16 copy of an operand that is not packed (lda {lda}, ldb {ldb}); this is a bug in the generated schedule.");
        if (a16 == 0) a16 = Bf16Operand(A, rowsA, colsA, lda, 0);
        if (b16 == 0) b16 = Bf16Operand(B, rowsB, colsB, ldb, 1);
        return (a16, b16, colsA, colsB);
    }

    /// <summary>A product wrote C (M rows of N floats, row stride ldc): a remembered operand that C overlaps is stale.</summary>
    void Wrote(ulong C, int M, int N, int ldc)
    {
        ulong cEnd = C + ((ulong)(M - 1) * (ulong)ldc + (ulong)N) * 4;
        for (int slot = 0; slot < 2; slot++)
            if (_held[slot].Src != 0 && _held[slot].Src < cEnd && C < _held[slot].End) _held[slot] = default;
    }

    /// <summary>cuBLASLt for <see cref="GemmBias"/> (null: the library is missing, the products and bias kernels run as before).</summary>
    internal CublasLt? Lt;
    /// <summary>The products' workspace (shared by cuBLAS and cuBLASLt: one stream orders them).</summary>
    internal ulong Workspace, WorkspaceBytes;

    /// <summary>A Linear's or MatMul's bias added by the product itself, cuBLASLt's bias epilogue (on by default; BERT_CUDA_BIAS_EPILOGUE=0
    /// turns it off to compare). Change it between steps only.</summary>
    public bool BiasEpilogue { get; set; } = true;

    /// <summary>Row-major C(M×N) = op(A)·op(B) + bias (one bias element per column of C, broadcast over the rows) in one
    /// cublasLtMatmul with CUBLASLT_EPILOGUE_BIAS, where the generated schedule would run a product into buffer
    /// <paramref name="productOut"/> and then a fused kernel adding the bias into C (Plan.EpilogueOf): one pass over C
    /// instead of three (BERT-Base's query-key-value bias at B=64, T=128: 150 MB a layer). The operands as <see cref="Gemm"/>
    /// takes them (fp32, TF32, or bf16 with their copies given); C fp32. Returns false, having done nothing, when it does not
    /// apply — turned off, no cuBLASLt, bf16 rounded by cuBLAS, the bias not 16-byte aligned, or cuBLASLt has no algorithm for
    /// the shape — and the schedule then runs the product and the bias kernel.</summary>
    /// <param name="residual">Added too (cuBLASLt's C, β = 1; C then is D): y = residual + (x + b), a residual connection
    /// (packed like C, fp32); 0: none.</param>
    /// <param name="dropout">The residual's other term is dropped out: the product adds the residual only in a forward without
    /// dropout (an inference forward), else it declines.</param>
    public bool GemmBias(int productOut, bool transA, bool transB, int M, int N, int K, ulong A, int lda, ulong B, int ldb, ulong C, int ldc, ulong bias,
        ulong residual = 0, bool dropout = false, ulong a16 = 0, ulong b16 = 0)
    {
        MarkFp32(productOut, 0);
        if (!BiasEpilogue || Lt == null || M == 0 || N == 0 || K == 0 || bias % 16 != 0 || C % 16 != 0) return false;
        if (residual != 0 && ((dropout && Training) || residual % 16 != 0)) return false;
        bool bf16 = Precision == CudaPrecision.Bf16;
        if (bf16 && Bf16InCublas) return false;
        if (!bf16 && _shadowsOnly) return false;   // Gemm says why
        var compute = Precision == CudaPrecision.Tf32 ? CublasComputeType.Compute32FFastTF32 : CublasComputeType.Compute32F;
        var type = bf16 ? CudaDataType.R16BF : CudaDataType.R32F;
        int colsA = transA ? M : K, colsB = transB ? K : N;
        // The row strides the operands will have: bf16 copies are packed.
        int ldA = bf16 ? colsA : lda, ldB = bf16 ? colsB : ldb;
        // In bf16 the operands' copies first (a slot a kernel wrote is taken as it is; if cuBLASLt then declines, the product
        // that runs instead finds them there).
        ulong a = A, b = B;
        if (bf16) (a, b, _, _) = Bf16Operands(transA, transB, M, N, K, A, lda, B, ldb, a16, b16);
        if (!Lt.CanBias(transA, transB, M, N, K, ldA, ldB, ldc, type, compute, a, b, C, residual, WorkspaceBytes)) return false;
        if (!bf16) ForgetOperands();
        OnLaunch?.Invoke($"gemm+bias{(residual != 0 ? "+residual" : "")} {(bf16 ? "bf16" : Precision == CudaPrecision.Tf32 ? "tf32" : "fp32")} {(transA ? 'T' : 'N')}{(transB ? 'T' : 'N')} {M}x{N}x{K}");
        Lt.RowMajorBias(transA, transB, M, N, K, a, ldA, b, ldB, C, ldc, bias, residual, type, compute, Workspace, WorkspaceBytes, Stream);
        Wrote(C, M, N, ldc);
        MarkFp32(productOut, Folded);   // the product's own output was never written
        return true;
    }

    /// <summary>In bf16 precision (linear layers' products rounded by our kernels), the products whose outputs only fused
    /// element-wise kernels read write them in bf16 (<see cref="Store16"/>), as autocast keeps a product's output: half the
    /// bytes written by the product and read by the kernels after it (BERT's query-key-value, attention output and
    /// feed-forward products).
    /// On by default on inference bindings (no backward follows); off (BERT_CUDA_BF16=fp32-outputs) to compare.
    /// Change it between steps only.</summary>
    public bool Bf16Outputs { get; set; } = true;

    /// <summary><see cref="Bf16Outputs"/> on training bindings too, whose backward then reads the kept outputs in bf16 as well.
    /// Off by default: one more rounding per product adds about 9 % to the bf16 gradients' error (BERT-Base under the host
    /// emulation: 1.71e-2 → 1.87e-2 of the self-test's 2e-2 limit); BERT_CUDA_BF16=bf16-outputs turns it on.</summary>
    public bool Bf16OutputsInTraining { get; set; }

    bool Bf16OutputsOn => Bf16Outputs && (!BackwardMayFollow || Bf16OutputsInTraining) && Precision == CudaPrecision.Bf16 && !Bf16InCublas;

    /// <summary>The binding is a training one: a backward may follow any forward (with dropout or without), so
    /// <see cref="Bf16Outputs"/> applies only with <see cref="Bf16OutputsInTraining"/>.</summary>
    internal bool BackwardMayFollow { get; set; }

    /// <summary>Per buffer of the memory plan: whether its last writer, a product, wrote it in bf16 (<see cref="Store16"/>).</summary>
    bool[] _holds16 = [];

    /// <summary>For the product that writes buffer <paramref name="id"/> (a product's output only fused kernels read,
    /// Plan.Bf16Stored): whether it writes it in bf16 now (<see cref="Bf16Outputs"/>), remembered for the kernels that read it
    /// (<see cref="In32"/>, <see cref="In16"/>) and for <see cref="Holds16"/>.</summary>
    public bool Store16(int id) => _holds16[id] = Bf16OutputsOn;

    /// <summary>What the host knows of the buffers after a schedule (for a captured graph, restored at each replay).</summary>
    sealed record BufferState(bool[] Holds16, int[] Fp32Skipped, bool ShadowsMade, bool ShadowsOnly, bool[] ShadowWritten);

    internal object SaveBufferState() => new BufferState((bool[])_holds16.Clone(), (int[])_fp32Skipped.Clone(), _shadowsMade, _shadowsOnly, (bool[])_shadowWritten.Clone());

    internal void RestoreBufferState(object state)
    {
        var s = (BufferState)state;
        _holds16 = (bool[])s.Holds16.Clone();
        _fp32Skipped = (int[])s.Fp32Skipped.Clone();
        _shadowsMade = s.ShadowsMade;
        _shadowsOnly = s.ShadowsOnly;
        _shadowWritten = (bool[])s.ShadowWritten.Clone();
    }

    /// <summary>A new layout (<see cref="Offsets"/> set): every buffer written in fp32 until a schedule says otherwise.</summary>
    internal void ResetBufferState() { _holds16 = new bool[Offsets.Length]; _fp32Skipped = new int[Offsets.Length]; }

    /// <summary>Buffer <paramref name="id"/> for a fused kernel's fp32 input pointer, or 0 when its product wrote it in bf16.</summary>
    public ulong In32(int id) => Holds16(id) ? 0 : Buf(id);

    /// <summary>Buffer <paramref name="id"/> for a fused kernel's bf16 input pointer when its product wrote it in bf16, else 0.</summary>
    public ulong In16(int id) => Holds16(id) ? Buf(id) : 0;

    /// <summary>Whether buffer <paramref name="id"/> holds bf16 values (its product wrote it so), in its first half.</summary>
    public bool Holds16(int id) => _holds16[id];

    /// <summary>What each of the two bf16 operand slots holds: the rounded copy of [Src, End) with that shape, until a launch,
    /// a memset or a product writing over the source makes it stale. A Linear's backward rounds its output gradient once for
    /// both products (dX = dY·W and dW = dYᵀ·X take it as their first operand).</summary>
    (ulong Src, ulong End, int Rows, int Cols, int Ld)[] _held = new (ulong, ulong, int, int, int)[2];

    /// <summary>Forgets the bf16 operands the slots hold (anything may have written their sources).</summary>
    internal void ForgetOperands() { _held[0] = default; _held[1] = default; }

    /// <summary>A product's operand in bf16: a packed weight (inside the parameters, 16-byte aligned in the bf16 copy) is read
    /// from <see cref="Params16"/>, which CudaModel keeps current; anything else is rounded into operand slot
    /// <paramref name="slot"/> (0 or 1), unless that slot still holds it.</summary>
    ulong Bf16Operand(ulong x, int rows, int cols, int ld, int slot)
    {
        if (Params16 != 0 && ld == cols && x >= Params && x + (ulong)rows * (ulong)cols * 4 <= Params + ParamCount * 4)
        {
            ulong elements = (x - Params) / 4;
            if (elements % 8 == 0) return Params16 + elements * 2;
        }
        ulong dst = GemmScratch + (ulong)(slot * GemmSlot) * 2;
        var operand = (x, x + ((ulong)(rows - 1) * (ulong)ld + (ulong)cols) * 4, rows, cols, ld);
        if (_held[slot] == operand) return dst;
        if (ld == cols) ConvertBf16(dst, x, (long)rows * cols);
        else LaunchKeeping("rt_to_bf16", Grid((long)rows * cols), Args().Add(dst).Add(x).Add((long)rows).Add(cols).Add(ld));
        _held[slot] = operand;
        return dst;
    }

    /// <summary>In bf16 precision on a training binding: rounds activation <paramref name="x"/> (<paramref name="n"/> floats, a
    /// product's packed operand) into its shadow <paramref name="k"/> and returns the shadow, which the later products of the
    /// forward and the backward's read as <see cref="Shadow"/> (the activation is written once and lives until them, as the
    /// memory plan keeps it); otherwise 0 (the product rounds its operand itself). Called by the generated schedule at the
    /// first product that reads x. <see cref="Bf16Shadows"/> changes only between steps.</summary>
    public ulong ToShadow(int k, ulong x, long n)
    {
        if (!ShadowsOn) return 0;
        ulong dst = ShadowAt(k);
        if (_shadowsMade && k < _shadowWritten.Length && _shadowWritten[k]) return dst;   // its producer wrote it (Out16)
        ConvertBf16(dst, x, n);   // writes the shadow alone: what the operand slots hold stays valid
        return dst;
    }

    /// <summary>Shadow <paramref name="k"/> as its first product made it (<see cref="ToShadow"/>), or 0 when shadows are off or
    /// the last forward made none (a setting changed between it and this backward: the product then rounds its operand).</summary>
    public ulong Shadow(int k) => _shadowsMade && (ShadowsOn || _shadowsOnly) ? ShadowAt(k) : 0;

    /// <summary>This forward left an activation in its shadow alone (<see cref="Out32"/>): its backward reads the shadows even
    /// if they were turned off since.</summary>
    bool _shadowsOnly;

    ulong ShadowAt(int k) => ShadowBase + (ulong)ShadowOffsets[k];

    bool ShadowsOn => ShadowBase != 0 && Bf16Shadows && Precision == CudaPrecision.Bf16 && !Bf16InCublas;

    /// <summary>Called by CudaModel before each forward schedule: whether this forward makes the shadows its backward reads.</summary>
    internal void BeginForward()
    {
        _shadowsMade = ShadowsOn;
        _shadowsOnly = false;
        if (_shadowWritten.Length != ShadowOffsets.Length) _shadowWritten = new bool[ShadowOffsets.Length];
        else Array.Clear(_shadowWritten);
    }

    bool _shadowsMade;

    /// <summary>In bf16 precision, training bindings keep each product's activation operand in bf16 from the first product
    /// that reads it to the backward's (dW = dYᵀ·X), instead of rounding it per product (on by default; off to compare:
    /// the same bits). Change it between steps only.</summary>
    public bool Bf16Shadows { get; set; } = true;
    /// <summary>The shadows' memory (0: none bound) and each one's byte offset in it at the bound shape.</summary>
    internal ulong ShadowBase;
    internal long[] ShadowOffsets = [];

    /// <summary>dst (n bf16) = src (n floats) rounded to nearest even, four at a time where the addresses allow.</summary>
    void ConvertBf16(ulong dst, ulong src, long n)
    {
        if (n % 4 == 0 && src % 16 == 0 && dst % 8 == 0)
            LaunchKeeping("rt_to_bf16_4", Grid(n / 4), Args().Add(dst).Add(src).Add(n / 4));
        else
            LaunchKeeping("rt_to_bf16", Grid(n), Args().Add(dst).Add(src).Add(1L).Add((int)Math.Min(n, int.MaxValue)).Add((int)Math.Min(n, int.MaxValue)));
    }

    /// <summary>dst (n bf16) = src (n floats) rounded to nearest even.</summary>
    internal void ToBf16(ulong dst, ulong src, long n)
    {
        if (n > int.MaxValue) throw new InvalidOperationException($"A bf16 conversion of {n} values is more than one launch converts.");
        ForgetOperands();
        ConvertBf16(dst, src, n);
    }

    /// <summary>How the matrix products round their operands.</summary>
    public CudaPrecision Precision { get; internal set; } = CudaPrecision.Fp32;
    /// <summary>In <see cref="CudaPrecision.Bf16"/>: the linear layers' products take their fp32 operands as they are and cuBLAS
    /// rounds them to bf16 (CUBLAS_COMPUTE_32F_FAST_16BF) instead of our conversion kernels and the bf16 weight copy
    /// (BERT_CUDA_BF16=cublas, to compare; off by default until measured).</summary>
    public bool Bf16InCublas { get; set; }
    internal ulong GemmScratch;
    internal long GemmSlot;
    /// <summary>The parameters rounded to bf16 (0 until bf16 precision is chosen), and how many there are.</summary>
    internal ulong Params16;
    internal ulong ParamCount;

    /// <summary>y[n] = table[ids[n]]: the gather of <see cref="Gather"/> over the table's V rows.</summary>
    public void Embedding(ulong y, ulong table, ulong ids, int N, int C, int V) => Gather(y, table, ids, N, C, V);

    /// <summary>dTable[ids[n]] += dy[n]. When the ids are an input whose rows were grouped by id as it was set
    /// (<see cref="GroupById"/>, training bindings), blocks sum the segments of each id's rows; otherwise each thread
    /// (column, id bucket) scans all the ids. The grouped launches' grids depend only on N (the kernels read the counts
    /// of segments and runs from the device), so a captured graph replays with each batch's grouping.</summary>
    public void EmbeddingBackward(ulong dTable, ulong dy, ulong ids, int N, int C, int V)
    {
        int input = Array.IndexOf(IntPtrs, ids);
        if (input >= 0 && input < RunCounts.Length && RunCounts[input] >= 0)
        {
            var at = SegmentLayout.Of(N);
            ulong order = RunPtrs[input], runStart = order + (ulong)N * 4, runId = order + (ulong)(2 * N + 1) * 4;
            ulong segLo = order + (ulong)at.SegLo * 4, segRun = order + (ulong)at.SegRun * 4, segPart = order + (ulong)at.SegPart * 4;
            ulong multiRun = order + (ulong)at.MultiRun * 4, multiFirst = order + (ulong)at.MultiFirst * 4, counts = order + (ulong)at.Counts * 4;
            RequireScratch((long)MaxSegmentParts(N) * C, "the embedding backward");
            uint threads = (uint)Math.Clamp((C + 31) / 32 * 32, 32, Block);
            LaunchBlocks("rt_embed_backward_segments", (uint)Math.Clamp(N, 1, SegmentBlocks),
                Args().Add(dTable).Add(Scratch).Add(dy).Add(order).Add(runStart).Add(runId).Add(segLo).Add(segRun).Add(segPart)
                    .Add(counts).Add(CudaKernels.EmbedSegmentRows).Add(C).Add(V), threads);
            LaunchBlocks("rt_embed_backward_finish", new Dim3(Grid(C), (uint)Math.Clamp(MaxMultiSegmentRuns(N), 1, MaxGrid)),
                Args().Add(dTable).Add(Scratch).Add(runId).Add(multiRun).Add(multiFirst).Add(counts).Add(C).Add(V));
            return;
        }
        LaunchBlocks("rt_embed_backward", new Dim3(Grid(C), (uint)Math.Clamp(V, 1, 128)), Args().Add(dTable).Add(dy).Add(ids).Add(N).Add(C).Add(V));
    }

    /// <summary>Blocks of the segment kernel at most (each walks segments blockIdx.x, + gridDim.x, … below the count).</summary>
    const int SegmentBlocks = 4096;

    /// <summary>Runs of more than one segment among n rows, at most: each has over EmbedSegmentRows rows.</summary>
    static int MaxMultiSegmentRuns(int n) => n / (CudaKernels.EmbedSegmentRows + 1);

    /// <summary>Partials the embedding backward writes for n rows, at most: a run of L &gt; S rows writes ⌈L/S⌉ &lt; 2L/S.</summary>
    internal static int MaxSegmentParts(int n) => 2 * n / CudaKernels.EmbedSegmentRows + 1;

    /// <summary>Per integer input: its rows grouped by id (device, <see cref="GroupById"/>'s and <see cref="SegmentRuns"/>'
    /// layout) and the number of distinct ids, or -1 when not grouped.</summary>
    internal ulong[] RunPtrs = [];
    internal int[] RunCounts = [];

    /// <summary>Ints of host and device memory the grouped rows of n ids take, segments and counts included.</summary>
    public static int GroupedLength(int n) => SegmentLayout.Of(n).End;

    /// <summary>Where <see cref="SegmentRuns"/> writes its arrays in the grouped ints of n ids (after GroupById's 3n + 2), as
    /// offsets in ints, each sized for the most it can hold, so that no offset depends on the ids: segLo, segRun, segPart
    /// (one per segment, at most n), multiRun (one per run of several segments), multiFirst (one more), then the counts
    /// of segments and of runs of several segments, and where it all ends.</summary>
    public readonly record struct SegmentLayout(int SegLo, int SegRun, int SegPart, int MultiRun, int MultiFirst, int Counts, int End)
    {
        public static SegmentLayout Of(int n)
        {
            // Runs of several segments: at most n / (segment rows + 1); room for n, so that any segment length fits.
            int segLo = 3 * n + 2, multiRun = segLo + 3 * n, multiFirst = multiRun + n, counts = multiFirst + n + 1;
            return new(segLo, segLo + n, segLo + 2 * n, multiRun, multiFirst, counts, counts + 2);
        }
    }

    /// <summary>Cuts the <paramref name="runs"/> runs that <see cref="GroupById"/> wrote into <paramref name="packed"/> (n ids)
    /// into segments of at most <paramref name="segmentRows"/> rows, written at <see cref="SegmentLayout"/>'s places: segLo
    /// (each segment's first position in the row order), segRun (its run), segPart (its partial's index, or -1 when its run
    /// is a single segment, which adds to the table directly), the runs of several segments (multiRun), where each one's
    /// partials start (multiFirst, one more value), and the two counts. Returns the segment count, the multi-segment run
    /// count and the partial count.</summary>
    public static (int Segments, int Multi, int Parts) SegmentRuns(Span<int> packed, int n, int runs, int segmentRows)
    {
        if (packed.Length < GroupedLength(n)) throw new ArgumentException($"SegmentRuns needs {GroupedLength(n)} ints for {n} ids but was given {packed.Length}.", nameof(packed));
        if (segmentRows < 1) throw new ArgumentOutOfRangeException(nameof(segmentRows));
        var runStart = packed.Slice(n, runs + 1);
        var at = SegmentLayout.Of(n);
        int s = 0, m = 0, parts = 0;
        for (int r = 0; r < runs; r++)
        {
            bool several = runStart[r + 1] - runStart[r] > segmentRows;
            if (several) { packed[at.MultiRun + m] = r; packed[at.MultiFirst + m] = parts; m++; }
            for (int lo = runStart[r]; lo < runStart[r + 1]; lo += segmentRows, s++)
            {
                packed[at.SegLo + s] = lo; packed[at.SegRun + s] = r;
                packed[at.SegPart + s] = several ? parts++ : -1;
            }
        }
        packed[at.MultiFirst + m] = parts;
        packed[at.Counts] = s; packed[at.Counts + 1] = m;
        return (s, m, parts);
    }

    /// <summary>Ids above this are not grouped (the count array would be too large); the scanning kernel takes them.</summary>
    public const int MaxGroupedId = 1 << 24;

    /// <summary>Groups the rows of <paramref name="ids"/> (n of them) by id for the embedding backward, a stable counting sort:
    /// <paramref name="packed"/> (at least 3n + 2 ints) receives at [0, m) the m rows with a non-negative id, by id and then
    /// by row; at [n, n + R] the start of each id's rows (R + 1 values); at [2n + 1, 2n + 1 + R) the R distinct ids, ascending.
    /// Returns R, or -1 when an id exceeds <see cref="MaxGroupedId"/>. <paramref name="counts"/> is scratch, grown as needed.</summary>
    public static int GroupById(ReadOnlySpan<int> ids, Span<int> packed, ref int[] counts)
    {
        int n = ids.Length, max = -1;
        if (packed.Length < 3 * n + 2) throw new ArgumentException($"GroupById needs {3 * n + 2} ints of output for {n} ids but was given {packed.Length}.", nameof(packed));
        foreach (int id in ids) if (id > max) max = id;
        if (max > MaxGroupedId) return -1;
        if (counts.Length < max + 2) counts = new int[Math.Max(max + 2, 2 * counts.Length)];
        var c = counts.AsSpan(0, max + 2);
        c.Clear();
        foreach (int id in ids) if (id >= 0) c[id + 1]++;
        for (int v = 1; v < c.Length; v++) c[v] += c[v - 1];          // c[v]: where id v's rows start
        Span<int> runStart = packed.Slice(n, n + 1), runId = packed.Slice(2 * n + 1, n + 1);
        int runs = 0;
        for (int v = 0; v <= max; v++)
            if (c[v + 1] > c[v]) { runStart[runs] = c[v]; runId[runs] = v; runs++; }
        runStart[runs] = c[max + 1];
        for (int row = 0; row < n; row++)
            if (ids[row] >= 0) packed[c[ids[row]]++] = row;
        return runs;
    }

    /// <summary>Whether a LayerNorm's rows fit the register-held kernels (rt_layernorm_forward4, rt_layernorm_backward_x4).</summary>
    static bool RowsInRegisters(int C, ulong a, ulong b, ulong c = 0) => C % 4 == 0 && C <= 1024 && (a | b | c) % 16 == 0;

    /// <summary>LayerNorm's forward over N rows of C; <paramref name="y16"/> (from <see cref="Out16"/>; 0: none) also gets y
    /// rounded to bf16.</summary>
    public void LayerNorm(ulong y, ulong mean, ulong rstd, ulong x, ulong w, ulong b, int N, int C, float eps, ulong y16 = 0)
    {
        if (N == 0) { DropPendingSlot(); return; }
        LaunchBlocks(RowsInRegisters(C, y, x) && y16 % 8 == 0 ? "rt_layernorm_forward4" : "rt_layernorm_forward", (uint)((N + Block / 32 - 1) / (Block / 32)),
            Args().Add(y).Add(mean).Add(rstd).Add(x).Add(w).Add(b).Add(N).Add(C).Add(eps).Add(y16));
        TakePendingSlot();
    }

    /// <summary>LayerNorm's backward: dx += (or, <paramref name="accumulate"/> false, =) the input gradient, dw and db += the
    /// weight and bias gradients (partial sums over chunks of <see cref="CudaKernels.RowChunk"/> rows, then added in chunk
    /// order). Rows of at most 1024 columns, a multiple of 4, take one kernel for dx and the partial sums
    /// (rt_layernorm_backward4: dy and x read once), unless <see cref="SeparateLayerNormSums"/>.</summary>
    public void LayerNormBackward(ulong dx, ulong dw, ulong db, ulong dy, ulong x, ulong w, ulong mean, ulong rstd, int N, int C, bool accumulate = true)
    {
        if (N == 0) return;
        int chunks = (N + CudaKernels.RowChunk - 1) / CudaKernels.RowChunk;
        bool sums = dw != 0 || db != 0;
        if (sums) RequireScratch(2L * chunks * C, "LayerNorm");
        if (dx != 0 && sums && RowsInRegisters(C, dx, dy, x) && Scratch % 16 == 0 && !SeparateLayerNormSums)
            // dx and the partial column sums in one pass over dy and x (a block of 4 warps per chunk of rows)
            LaunchBlocks("rt_layernorm_backward4", (uint)chunks, Args().Add(dx).Add(Scratch).Add(dy).Add(x).Add(w).Add(mean).Add(rstd).Add(N).Add(C).Add(CudaKernels.RowChunk).Add(accumulate ? 1 : 0), 128);
        else
        {
            if (dx != 0)
                LaunchBlocks(RowsInRegisters(C, dx, dy, x) ? "rt_layernorm_backward_x4" : "rt_layernorm_backward_x", (uint)((N + Block / 32 - 1) / (Block / 32)), Args().Add(dx).Add(dy).Add(x).Add(w).Add(mean).Add(rstd).Add(N).Add(C).Add(accumulate ? 1 : 0));
            if (!sums) return;
            LaunchBlocks("rt_layernorm_backward_wb_partial", new Dim3((uint)((C + Block - 1) / Block), (uint)chunks),
                Args().Add(Scratch).Add(dy).Add(x).Add(mean).Add(rstd).Add(N).Add(C).Add(CudaKernels.RowChunk));
        }
        LaunchBlocks("rt_layernorm_backward_wb_finish", (uint)((C + 31) / 32), Args().Add(dw).Add(db).Add(Scratch).Add(C).Add(chunks), 1024);
    }

    /// <summary>LayerNorm's backward in two passes over dy and x, dx then the partial column sums, as before
    /// rt_layernorm_backward4 (the self-test's separate-ln-sums timing row, to time the two against each other); the same dx bits.</summary>
    public bool SeparateLayerNormSums { get; set; }

    static float Scale(int C, int H) => 1f / MathF.Sqrt(C / H);

    /// <summary>The scratch attention uses: head-major Q, K, V, the output or its gradient, dQ, dK, dV (B·T·C each), the
    /// score gradients and the dropped probabilities (B·H·T·T each).</summary>
    public static long AttentionScratch(int B, int T, int C, int H) => 7L * B * T * C + 2L * B * H * T * T;

    /// <summary>Whether the head moves can go four floats at a time (rt_heads_split4 / rt_heads_merge4).</summary>
    static bool Vec4(ulong dst, ulong src, int B, int T, int C, int H, int stride, int offset) =>
        (C / H) % 4 == 0 && C % 4 == 0 && stride % 4 == 0 && offset % 4 == 0 && dst % 16 == 0 && src % 16 == 0 && (long)B * T * Math.Max(C, stride) < int.MaxValue;

    void Split(ulong dst, ulong src, int B, int T, int C, int H, int stride, int offset)
    {
        if (Vec4(dst, src, B, T, C, H, stride, offset))
            Launch("rt_heads_split4", (long)B * T * C / 4, Args().Add(dst).Add(src).Add(B * T).Add(T).Add(C).Add(H).Add(stride).Add(offset));
        else
            Launch("rt_heads_split", (long)B * T * C, Args().Add(dst).Add(src).Add(B).Add(T).Add(C).Add(H).Add(stride).Add(offset));
    }

    void Merge(ulong dst, ulong src, int B, int T, int C, int H, int stride, int offset, bool accumulate)
    {
        if (Vec4(dst, src, B, T, C, H, stride, offset))
            Launch("rt_heads_merge4", (long)B * T * C / 4, Args().Add(dst).Add(src).Add(B * T).Add(T).Add(C).Add(H).Add(stride).Add(offset).Add(accumulate ? 1 : 0));
        else
            Launch("rt_heads_merge", (long)B * T * C, Args().Add(dst).Add(src).Add(B).Add(T).Add(C).Add(H).Add(stride).Add(offset).Add(accumulate ? 1 : 0));
    }

    void Batched(bool tA, bool tB, int M, int N, int K, float alpha, ulong A, int lda, long sA, ulong Bm, int ldb, long sB, ulong C, int ldc, long sC, int batch)
    {
        OnLaunch?.Invoke($"gemm batched {(tA ? 'T' : 'N')}{(tB ? 'T' : 'N')} {batch}x{M}x{N}x{K}");
        ForgetOperands();
        Blas.GemmStridedBatched(tA, tB, M, N, K, alpha, A, lda, sA, Bm, ldb, sB, 0f, C, ldc, sC, batch, CudaDataType.R32F);
    }

    /// <summary>Attention's products through head-major copies of Q, K, V (and the output and its gradient) and strided
    /// batched products, as before the pointer-array products (BERT_CUDA_ATTENTION=split, to compare); off by default.</summary>
    public bool SplitHeads { get; set; }

    /// <summary>Device arrays of the B·H heads' addresses (base + b·batchStride + h·headStride, in bytes) for the pointer-array
    /// products, laid out in <see cref="HeadPool"/> (sized by CudaModel at Bind: <see cref="HeadArrays"/> per attention op)
    /// as first needed in a layout and reused while it lasts (a captured graph reads them); a new layout starts the pool
    /// over (<see cref="ResetHeads"/>): uploads in stream order, no allocation per step.</summary>
    readonly Dictionary<(ulong, long, long, int, int), ulong> _heads = new();
    internal ulong HeadPool;
    internal long HeadPoolBytes;
    long _headUsed;
    /// <summary>Bytes of the pointer pool not yet used.</summary>
    internal long HeadPoolFree => HeadPoolBytes - _headUsed;
    /// <summary>Pointer arrays one attention op uses at most (forward and backward).</summary>
    public const int HeadArrays = 16;
    /// <summary>Set while a CUDA graph is being captured: no pointer array may be made then (the upload would be captured).</summary>
    internal bool Capturing;

    ulong Heads(ulong at, long batchStride, long headStride, int B, int H)
    {
        var key = (at, batchStride, headStride, B, H);
        if (_heads.TryGetValue(key, out ulong d)) return d;
        if (Capturing) throw new InvalidOperationException("An attention pointer array was first needed during a graph capture; CudaModel runs the schedule once before capturing, so this is a bug.");
        long bytes = ((long)B * H * 8 + 15) & ~15L;
        if (_headUsed + bytes > HeadPoolBytes)
        {
            // Full of earlier layouts' arrays: start over (the launches already queued have read theirs by the time the
            // upload below runs, in stream order; graphs that point at them are dropped).
            if (bytes > HeadPoolBytes)
                throw new InvalidOperationException($"The attention pointer pool holds {HeadPoolBytes} bytes but one array needs {bytes}; this is a bug in CudaModel's sizing.");
            ResetHeads();
        }
        var h = new ulong[B * H];
        for (int b = 0; b < B; b++)
            for (int j = 0; j < H; j++) h[b * H + j] = at + (ulong)(b * batchStride + j * headStride);
        d = HeadPool + (ulong)_headUsed;
        _headUsed += bytes;
        CudaDriver.MemcpyHtoDAsync<ulong>(d, h, Stream);   // pageable: staged before the call returns, copied in stream order
        _heads[key] = d;
        return d;
    }

    /// <summary>Starts the pointer pool over (every array is made again as first needed; captured graphs are stale).</summary>
    internal void ResetHeads()
    {
        _heads.Clear();
        _headUsed = 0;
        LayoutsInPool.Clear();
        Generation++;
    }

    /// <summary>The layouts (CudaModel's binding keys) whose pointer arrays the pool has held since it last started over:
    /// their steps need no new room.</summary>
    internal readonly HashSet<(int Batch, int Seq, int Rows, bool Training, bool Reuse, bool Flash)> LayoutsInPool = [];

    /// <summary>Bumped whenever memory that launches point at moves or is reused for something else (a reallocation, the
    /// attention pointer pool started over): a graph captured under another generation must not be replayed.</summary>
    internal int Generation;

    void BatchedHeads(bool tA, bool tB, int M, int N, int K, float alpha, ulong A, int lda, ulong Bm, int ldb, float beta, ulong C, int ldc, int batch)
    {
        OnLaunch?.Invoke($"gemm heads {(tA ? 'T' : 'N')}{(tB ? 'T' : 'N')} {batch}x{M}x{N}x{K}");
        ForgetOperands();
        Blas.GemmBatched(tA, tB, M, N, K, alpha, A, lda, Bm, ldb, beta, C, ldc, batch, CudaDataType.R32F);
    }

    /// <summary>The pointer arrays of the Q, K and V heads inside a B×T×3C projection (or its gradient).</summary>
    (ulong Q, ulong K, ulong V) ProjectionHeads(ulong qkv, int B, int T, int C, int H)
    {
        long row = 3L * C * 4, head = C / H * 4;
        return (Heads(qkv, T * row, head, B, H), Heads(qkv + (ulong)C * 4, T * row, head, B, H), Heads(qkv + (ulong)C * 8, T * row, head, B, H));
    }

    /// <summary>Whether attention's products can take the heads where they lie (16-byte aligned heads).</summary>
    bool Direct(int C, int H, int T, params ulong[] pointers)
    {
        // Every head 16-byte aligned: D a multiple of 4 (heads inside the projections), T a multiple of 4 (the T×T blocks).
        if (SplitHeads || (C / H) % 4 != 0 || T % 4 != 0) return false;
        foreach (ulong p in pointers) if (p % 16 != 0) return false;
        return true;
    }

    /// <summary>Attention by the fused kernels (no head-major copies, no separate products) instead of cuBLAS batched
    /// products around a softmax kernel; for head sizes up to 128. Off by default until measured (BERT_CUDA_ATTENTION=fused).</summary>
    public bool FusedAttention { get; set; }

    const int FusedRows = 32;

    void LaunchFused(string name, int B, int T, int C, int H, KernelArguments args)
    {
        uint shared = (uint)(2 * FusedRows * (C / H + 1) * 4);
        OnLaunch?.Invoke(name);
        ForgetOperands();
        CudaDriver.LaunchKernel(Fn(name), new Dim3((uint)(B * H), (uint)((T + FusedRows - 1) / FusedRows)), Block, shared, Stream, args);
    }

    /// <summary>Attention by the tensor-core flash kernels (rt_flash_*: bf16 operands, fp32 accumulation, no T×T matrix in
    /// memory) in bf16 precision, for head sizes that are multiples of 8 up to 128 (BERT's 64 among them); other precisions and head sizes take the other paths. The
    /// probs buffer then holds each query row's log-sum-exp in its first B·H·T elements instead of the probabilities, and
    /// after them the dropout mask's bits (<see cref="FlashStatisticsFloats"/>). Off by
    /// default until measured on a GPU (BERT_CUDA_ATTENTION=flash).</summary>
    public bool FlashAttention { get; set; }

    /// <summary>Head sizes the flash kernels are compiled for.</summary>
    public static bool FlashHeadSize(int d) => Array.IndexOf(CudaKernels.FlashHeadSizes, d) >= 0;

    /// <summary>Whether <paramref name="op"/> is an attention whose head size the flash kernels take.</summary>
    public static bool TakesFlash(OpInfo op) => op.Kind == OpKind.Attention && op.Shape.Length > 0 && op.Heads > 0 && FlashHeadSize(op.Shape[^1] / op.Heads);

    /// <summary>Whether the card has bf16 tensor-core mma (compute capability 8.0 or newer); set by CudaModel.</summary>
    public bool FlashCapable { get; internal set; }

    /// <summary>Whether the flash kernels run now for the attentions whose head size they take (chosen, a card with bf16
    /// tensor cores, bf16 precision).</summary>
    public bool FlashOn => FlashAttention && FlashCapable && Precision == CudaPrecision.Bf16;

    /// <summary>Whether attention over C columns in H heads runs on the flash kernels now.</summary>
    public bool UsesFlash(int C, int H) => FlashOn && FlashHeadSize(C / H);

    /// <summary>Rows of queries (or keys) per block of the flash kernels; 4 warps of 16.</summary>
    public const int FlashRows = 64;

    void LaunchFlash(string name, int B, int T, int C, int H, KernelArguments args) =>
        LaunchBlocks($"{name}_d{C / H}", new Dim3((uint)(B * H), (uint)((T + FlashRows - 1) / FlashRows)), args, 128);

    /// <summary>Floats of a flash attention's probabilities buffer (<see cref="CudaModel.FlashStatistics"/>): B·H·T row
    /// log-sum-exps, then the dropout keep mask as B·H·T rows of ⌈T/32⌉ 32-bit words that the forward writes and the
    /// backward reads instead of drawing the mask again.</summary>
    public static long FlashStatisticsFloats(int batch, int heads, int seq) => (long)batch * heads * seq * (1 + (seq + 31) / 32);

    /// <summary>Where the keep mask's words start inside a flash probabilities buffer.</summary>
    static ulong FlashKeepBits(ulong probs, int B, int H, int T) => probs + (ulong)((long)B * H * T * 4);

    /// <summary>Scaled dot-product attention as the CPU computes it: scores = scale·Q·Kᵀ (cuBLAS, straight into probs), mask and
    /// softmax (saved), dropout, out = dropped·V (cuBLAS), over all B·H heads at once; or the flash kernels (probs then
    /// holds each query row's log-sum-exp), or the fused ones.</summary>
    /// <param name="y16">From <see cref="Out16"/> (0: none): where the flash kernel also writes y rounded to bf16; the other
    /// paths write no copy (and the product then rounds y itself).</param>
    public void Attention(ulong y, ulong probs, ulong qkv, ulong mask, int B, int T, int C, int H, float p, ulong site, ulong y16 = 0)
    {
        bool drop = Training && p > 0;
        int D = C / H, BH = B * H;
        if (UsesFlash(C, H))
        {
            LaunchFlash("rt_flash_forward", B, T, C, H,
                Args().Add(y).Add(probs).Add(qkv).Add(mask).Add(T).Add(C).Add(H).Add(Scale(C, H)).Add(p).Add(SeedPointer).Add(site).Add(drop ? 1 : 0).Add(y16)
                    .Add(FlashKeepBits(probs, B, H, T)));
            TakePendingSlot();
            return;
        }
        DropPendingSlot();
        if (FusedAttention && D <= 128)
        {
            LaunchFused("rt_attention_fused_forward", B, T, C, H,
                Args().Add(y).Add(probs).Add(qkv).Add(mask).Add(B).Add(T).Add(C).Add(H).Add(Scale(C, H)).Add(p).Add(SeedPointer).Add(site).Add(drop ? 1 : 0));
            return;
        }
        long btc = (long)B * T * C, tt = (long)T * T, td = (long)T * D;
        RequireScratch(AttentionScratch(B, T, C, H), "attention");
        if (Direct(C, H, T, qkv, y, probs, Scratch))
        {
            // Each head where it lies: Q, K, V rows 3C apart inside qkv, the output rows C apart inside y.
            long tt4 = tt * 4;
            var (hq, hk, hv) = ProjectionHeads(qkv, B, T, C, H);
            ulong hp = Heads(probs, H * tt4, tt4, B, H), hd = Heads(Scratch, H * tt4, tt4, B, H), hy = Heads(y, (long)T * C * 4, D * 4, B, H);
            BatchedHeads(false, true, T, T, D, Scale(C, H), hq, 3 * C, hk, 3 * C, 0f, hp, T, BH);
            LaunchBlocks("rt_attention_softmax", (uint)(((long)BH * T + Block / 32 - 1) / (Block / 32)),
                Args().Add(probs).Add(Scratch).Add(mask).Add(B).Add(H).Add(T).Add(p).Add(SeedPointer).Add(site).Add(drop ? 1 : 0));
            BatchedHeads(false, false, T, D, T, 1f, drop ? hd : hp, T, hv, 3 * C, 0f, hy, C, BH);
            return;
        }
        ulong q = Scratch, k = q + (ulong)btc * 4, v = k + (ulong)btc * 4, o = v + (ulong)btc * 4, dropped = Scratch + (ulong)(7 * btc) * 4;
        Split(q, qkv, B, T, C, H, 3 * C, 0); Split(k, qkv, B, T, C, H, 3 * C, C); Split(v, qkv, B, T, C, H, 3 * C, 2 * C);
        Batched(false, true, T, T, D, Scale(C, H), q, D, td, k, D, td, probs, T, tt, BH);
        LaunchBlocks("rt_attention_softmax", (uint)(((long)BH * T + Block / 32 - 1) / (Block / 32)),
            Args().Add(probs).Add(dropped).Add(mask).Add(B).Add(H).Add(T).Add(p).Add(SeedPointer).Add(site).Add(drop ? 1 : 0));
        Batched(false, false, T, D, T, 1f, drop ? dropped : probs, T, tt, v, D, td, o, D, td, BH);
        Merge(y, o, B, T, C, H, C, 0, accumulate: false);
    }

    /// <summary>Attention's backward: dqkv += (or, <paramref name="accumulate"/> false, =) the gradient of the projections for
    /// output gradient dy; y is the forward's output (the flash kernels take Δ = rowsum(dy ⊙ y) from it; the plan keeps it
    /// until here).</summary>
    public void AttentionBackward(ulong dqkv, ulong dy, ulong y, ulong qkv, ulong probs, ulong mask, int B, int T, int C, int H, float p, ulong site, bool accumulate = true)
    {
        int acc = accumulate ? 1 : 0;
        float beta = accumulate ? 1f : 0f;
        bool drop = Training && p > 0;
        int D = C / H, BH = B * H;
        if (UsesFlash(C, H))
        {
            // The query kernel adds dQ and leaves Δ = rowsum(dO ⊙ O) per query row in the scratch; the key kernel adds dK and dV.
            RequireScratch((long)BH * T, "attention");
            foreach (string kernel in new[] { "rt_flash_backward_q", "rt_flash_backward_kv" })
                LaunchFlash(kernel, B, T, C, H,
                    Args().Add(dqkv).Add(Scratch).Add(dy).Add(y).Add(qkv).Add(probs).Add(mask).Add(T).Add(C).Add(H).Add(Scale(C, H)).Add(p).Add(SeedPointer).Add(site).Add(drop ? 1 : 0).Add(acc)
                        .Add(FlashKeepBits(probs, B, H, T)));
            return;
        }
        if (FusedAttention && D <= 128)
        {
            RequireScratch((long)BH * T * T, "attention");
            LaunchFused("rt_attention_fused_backward_q", B, T, C, H,
                Args().Add(dqkv).Add(Scratch).Add(dy).Add(qkv).Add(probs).Add(B).Add(T).Add(C).Add(H).Add(Scale(C, H)).Add(p).Add(SeedPointer).Add(site).Add(drop ? 1 : 0).Add(acc));
            LaunchFused("rt_attention_fused_backward_kv", B, T, C, H,
                Args().Add(dqkv).Add(Scratch).Add(dy).Add(qkv).Add(probs).Add(B).Add(T).Add(C).Add(H).Add(Scale(C, H)).Add(p).Add(SeedPointer).Add(site).Add(drop ? 1 : 0).Add(acc));
            return;
        }
        long btc = (long)B * T * C, tt = (long)T * T, td = (long)T * D, bhtt = (long)BH * tt;
        RequireScratch(AttentionScratch(B, T, C, H), "attention");
        if (Direct(C, H, T, dqkv, dy, qkv, probs, Scratch))
        {
            // dP = dO·Vᵀ into dS (scratch), the softmax backward in place (and the dropped probabilities made again), then
            // dV += P̃ᵀ·dO, dQ += scale·dS·K, dK += scale·dSᵀ·Q straight into dqkv (β = 1: the gradient adds up; β = 0 when
            // this is the first gradient into dqkv).
            long tt4 = tt * 4, yRow = (long)C * 4;
            ulong sS = Scratch, sDropped = Scratch + (ulong)bhtt * 4;
            var (hq, hk, hv) = ProjectionHeads(qkv, B, T, C, H);
            var (gq, gk, gv) = ProjectionHeads(dqkv, B, T, C, H);
            ulong hp = Heads(probs, H * tt4, tt4, B, H), hs = Heads(sS, H * tt4, tt4, B, H), hd = Heads(sDropped, H * tt4, tt4, B, H), ho = Heads(dy, T * yRow, D * 4, B, H);
            float sc = Scale(C, H);
            BatchedHeads(false, true, T, T, D, 1f, ho, C, hv, 3 * C, 0f, hs, T, BH);
            LaunchBlocks("rt_attention_softmax_backward", (uint)(((long)BH * T + Block / 32 - 1) / (Block / 32)),
                Args().Add(sS).Add(sDropped).Add(probs).Add(B).Add(H).Add(T).Add(p).Add(SeedPointer).Add(site).Add(drop ? 1 : 0));
            BatchedHeads(true, false, T, D, T, 1f, drop ? hd : hp, T, ho, C, beta, gv, 3 * C, BH);
            BatchedHeads(false, false, T, D, T, sc, hs, T, hk, 3 * C, beta, gq, 3 * C, BH);
            BatchedHeads(true, false, T, D, T, sc, hs, T, hq, 3 * C, beta, gk, 3 * C, BH);
            return;
        }
        ulong At(long floats) => Scratch + (ulong)floats * 4;
        ulong q = At(0), k = At(btc), v = At(2 * btc), dO = At(3 * btc), dq = At(4 * btc), dk = At(5 * btc), dv = At(6 * btc);
        ulong dS = At(7 * btc), dropped = At(7 * btc + bhtt);
        float scale = Scale(C, H);
        Split(q, qkv, B, T, C, H, 3 * C, 0); Split(k, qkv, B, T, C, H, 3 * C, C); Split(v, qkv, B, T, C, H, 3 * C, 2 * C);
        Split(dO, dy, B, T, C, H, C, 0);
        Batched(false, true, T, T, D, 1f, dO, D, td, v, D, td, dS, T, tt, BH);                 // d dropped = dO·Vᵀ
        LaunchBlocks("rt_attention_softmax_backward", (uint)(((long)BH * T + Block / 32 - 1) / (Block / 32)),
            Args().Add(dS).Add(dropped).Add(probs).Add(B).Add(H).Add(T).Add(p).Add(SeedPointer).Add(site).Add(drop ? 1 : 0));
        Batched(true, false, T, D, T, 1f, drop ? dropped : probs, T, tt, dO, D, td, dv, D, td, BH); // dV = droppedᵀ·dO
        Batched(false, false, T, D, T, scale, dS, T, tt, k, D, td, dq, D, td, BH);                 // dQ = scale·dS·K
        Batched(true, false, T, D, T, scale, dS, T, tt, q, D, td, dk, D, td, BH);                  // dK = scale·dSᵀ·Q
        Merge(dqkv, dq, B, T, C, H, 3 * C, 0, accumulate);
        Merge(dqkv, dk, B, T, C, H, 3 * C, C, accumulate);
        Merge(dqkv, dv, B, T, C, H, 3 * C, 2 * C, accumulate);
    }

    public void Gather(ulong y, ulong x, ulong rows, int G, int C, int N) =>
        Launch("rt_gather_forward", (long)G * C, Args().Add(y).Add(x).Add(rows).Add(G).Add(C).Add(N));

    public void GatherBackward(ulong dx, ulong dy, ulong rows, int G, int C, int N)
    {
        int input = Array.IndexOf(IntPtrs, rows);
        if (input >= 0 && input < DistinctRows.Length && DistinctRows[input])
            Launch("rt_gather_backward_distinct", (long)G * C, Args().Add(dx).Add(dy).Add(rows).Add(G).Add(C).Add(N));
        else
            Launch("rt_gather_backward", C, Args().Add(dx).Add(dy).Add(rows).Add(G).Add(C).Add(N));
    }

    /// <summary>Per integer input: whether its values (the gathered rows) were distinct when last set.</summary>
    internal bool[] DistinctRows = [];

    /// <summary>Whether the non-negative values are all different (the masked positions of a batch).</summary>
    public static bool AllDistinct(ReadOnlySpan<int> values)
    {
        var seen = new HashSet<int>(values.Length);
        foreach (int v in values) if (v >= 0 && !seen.Add(v)) return false;
        return true;
    }

    public void First(ulong y, ulong x, int B, int T, int C) =>
        Launch("rt_first_forward", (long)B * C, Args().Add(y).Add(x).Add(B).Add(T).Add(C));

    public void FirstBackward(ulong dx, ulong dy, int B, int T, int C) =>
        Launch("rt_first_backward", (long)B * C, Args().Add(dx).Add(dy).Add(B).Add(T).Add(C));

    /// <summary>y (B,K,T) = x (B,T,K) with its last two axes swapped (Kernels.Transpose.Forward).</summary>
    public void Transpose(ulong y, ulong x, int B, int T, int K) =>
        Launch("rt_transpose_forward", (long)B * T * K, Args().Add(y).Add(x).Add(B).Add(T).Add(K));

    /// <summary>dx (B,T,K) += dyᵀ, or = with <paramref name="accumulate"/> false (Kernels.Transpose.Backward).</summary>
    public void TransposeBackward(ulong dx, ulong dy, int B, int T, int K, bool accumulate = true) =>
        Launch("rt_transpose_backward", (long)B * T * K, Args().Add(dx).Add(dy).Add(B).Add(T).Add(K).Add(accumulate ? 1 : 0));

    public void CrossEntropy(ulong loss, ulong probs, ulong logits, ulong labels, int N, int V)
    {
        RequireScratch(Math.Max(1, N), "cross-entropy");
        if (N > 0)
            LaunchBlocks("rt_ce_forward_rows", (uint)N, Args().Add(probs).Add(Scratch).Add(logits).Add(labels).Add(N).Add(V), 1024);
        LaunchBlocks("rt_ce_forward_total", 1, Args().Add(loss).Add(0UL).Add(Scratch).Add(labels).Add(N), 1024);
    }

    /// <summary>Cross-entropy's backward: dlogits += (or, <paramref name="accumulate"/> false, =) the logits' gradient.</summary>
    public void CrossEntropyBackward(ulong dlogits, ulong dloss, ulong probs, ulong labels, int N, int V, bool accumulate = true)
    {
        if (N == 0) return;
        LaunchBlocks("rt_ce_count", 1, Args().Add(Count).Add(labels).Add(N), 1024);
        LaunchBlocks("rt_ce_backward", new Dim3(Grid(V), (uint)Math.Min(N, 65535)),
            Args().Add(dlogits).Add(dloss).Add(Count).Add(probs).Add(labels).Add(N).Add(V).Add(accumulate ? 1 : 0));
    }

    /// <summary>Per row of a cross-entropy, as ints into <paramref name="into"/> (0: the scratch buffer): 1 when the argmax of
    /// the probabilities is the label, 0 when not, -1 when the label is ignored.</summary>
    public ulong CrossEntropyCorrect(ulong probs, ulong labels, int N, int V, ulong into = 0)
    {
        if (into == 0) { RequireScratch(Math.Max(1, N), "cross-entropy accuracy"); into = Scratch; }
        if (N > 0) LaunchBlocks("rt_ce_correct", (uint)N, Args().Add(into).Add(probs).Add(labels).Add(N).Add(V), 256);
        return into;
    }

    void RequireScratch(long floats, string what)
    {
        if (floats > ScratchFloats)
            throw new InvalidOperationException($"The CUDA scratch buffer holds {ScratchFloats} floats but {what} needs {floats}; this is a bug in CudaModel's sizing.");
    }
}
