using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace Bert.Runtime.Training;

/// <summary>State shared by the Adam-family optimizers: first and second moments m and v (flat, one per parameter,
/// of the parameters' own type T, so double training keeps double moments), the step count t, the hyperparameters,
/// and the chunk layout the fused passes run over. Not thread-safe: one Step at a time.</summary>
/// <remarks>Checkpoint format (little-endian): 8-byte magic naming the optimizer, int32 version (1), int32 size of T
/// in bytes, int64 parameter count, int64 step count, then m and v, each count·sizeof(T) bytes.</remarks>
public abstract unsafe class Optimizer<T> where T : unmanaged, IBinaryFloatingPointIeee754<T>
{
    const int FormatVersion = 1;
    readonly T[] _m, _v;
    private protected readonly ParameterChunks Layout;
    private protected readonly T* M, V;
    // Set for the duration of one Step (the spans are pinned by `fixed` around the parallel passes).
    private protected T* P, G;

    private protected Optimizer(IReadOnlyList<ParamInfo> parameters, double beta1, double beta2, double epsilon, double weightDecay)
    {
        if (!(beta1 >= 0 && beta1 < 1)) throw new ArgumentOutOfRangeException(nameof(beta1), $"beta1 = {beta1} must lie in [0, 1).");
        if (!(beta2 >= 0 && beta2 < 1)) throw new ArgumentOutOfRangeException(nameof(beta2), $"beta2 = {beta2} must lie in [0, 1).");
        if (!(epsilon > 0 && double.IsFinite(epsilon))) throw new ArgumentOutOfRangeException(nameof(epsilon), $"epsilon = {epsilon} must be positive and finite.");
        if (!(weightDecay >= 0 && double.IsFinite(weightDecay))) throw new ArgumentOutOfRangeException(nameof(weightDecay), $"weightDecay = {weightDecay} must be zero or positive.");
        Layout = new ParameterChunks(parameters);
        Beta1 = beta1; Beta2 = beta2; Epsilon = epsilon; WeightDecay = weightDecay;
        // Pinned for the optimizer's lifetime, so the passes use raw pointers without pinning each step.
        _m = GC.AllocateArray<T>(Math.Max(1, Layout.Count), pinned: true);
        _v = GC.AllocateArray<T>(Math.Max(1, Layout.Count), pinned: true);
        M = (T*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_m));
        V = (T*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_v));
    }

    /// <summary>Number of parameters (elements of the flat buffer) this optimizer updates.</summary>
    public int Count => Layout.Count;
    public double Beta1 { get; }
    public double Beta2 { get; }
    public double Epsilon { get; }
    public double WeightDecay { get; }

    /// <summary>Steps taken so far; the next Step uses t = StepCount + 1 in the bias corrections.</summary>
    public long StepCount
    {
        get => _step;
        set => _step = value >= 0 ? value : throw new ArgumentOutOfRangeException(nameof(value), $"A step count cannot be negative ({value}).");
    }
    long _step;

    /// <summary>First moment m (running mean of gradients), flat like the parameters; writable for custom checkpoints.</summary>
    public Span<T> FirstMoment => _m.AsSpan(0, Count);

    /// <summary>Second moment v (running mean of squared gradients), flat like the parameters.</summary>
    public Span<T> SecondMoment => _v.AsSpan(0, Count);

    /// <summary>One update of every parameter from its gradient at learning rate lr (already scheduled).</summary>
    public void Step(Span<T> parameters, ReadOnlySpan<T> gradients, float lr) => Step(parameters, gradients, (double)lr);

    /// <inheritdoc cref="Step(Span{T}, ReadOnlySpan{T}, float)"/>
    public void Step(Span<T> parameters, ReadOnlySpan<T> gradients, double lr)
    {
        if (parameters.Length != Count)
            throw new ArgumentException($"{Name} was built for {Count} parameters but was given {parameters.Length}; pass the model's whole Parameters span.", nameof(parameters));
        if (gradients.Length != Count)
            throw new ArgumentException($"{Name} was built for {Count} parameters but was given {gradients.Length} gradients; pass the model's whole Gradients span (Bind with training: true).", nameof(gradients));
        if (!(lr >= 0 && double.IsFinite(lr)))
            throw new ArgumentOutOfRangeException(nameof(lr), $"The learning rate {lr} must be zero or positive and finite.");
        _step++;
        if (Count == 0) return;
        fixed (T* p = parameters)
        fixed (T* g = gradients)
        {
            P = p; G = g;
            try { Apply(lr, _step); }
            finally { P = null; G = null; }
        }
    }

    /// <summary>The fused update for step t (1-based) over P, G, M, V.</summary>
    private protected abstract void Apply(double lr, long t);

    /// <summary>Eight ASCII characters that open this optimizer's checkpoints.</summary>
    private protected abstract string Magic { get; }

    private protected abstract string Name { get; }

    /// <summary>Zeroes the moments and the step count, as a freshly built optimizer.</summary>
    public void Reset()
    {
        _m.AsSpan().Clear(); _v.AsSpan().Clear(); _step = 0;
    }

    /// <summary>Writes m, v and the step count after a small header (see the class remarks).</summary>
    public void SaveState(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        RequireLittleEndian();
        using (var w = new BinaryWriter(stream, Encoding.ASCII, leaveOpen: true))
        {
            w.Write(Encoding.ASCII.GetBytes(Magic));
            w.Write(FormatVersion);
            w.Write(sizeof(T));
            w.Write((long)Count);
            w.Write(_step);
        }
        WriteAll(stream, _m, Count);
        WriteAll(stream, _v, Count);
    }

    /// <summary>Reads state written by SaveState of the same optimizer, element type and parameter count. A header
    /// that does not match throws before anything changes; a stream that ends inside the moments resets the state
    /// and throws.</summary>
    public void LoadState(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        RequireLittleEndian();
        byte[] magic; int version, size; long count, step;
        try
        {
            using var r = new BinaryReader(stream, Encoding.ASCII, leaveOpen: true);
            magic = r.ReadBytes(8);
            if (magic.Length < 8) throw new EndOfStreamException();
            version = r.ReadInt32(); size = r.ReadInt32(); count = r.ReadInt64(); step = r.ReadInt64();
        }
        catch (EndOfStreamException)
        {
            throw new InvalidDataException($"The stream ends inside the optimizer state header; it is not a complete {Name} checkpoint.");
        }
        string found = Encoding.ASCII.GetString(magic);
        if (found != Magic)
        {
            string? other = found switch { AdamW<T>.MagicText => "AdamW", Lamb<T>.MagicText => "Lamb", _ => null };
            throw new InvalidDataException(other is null
                ? $"The stream does not start with the {Name} state header '{Magic}'; pass a stream written by {Name}.SaveState."
                : $"The stream holds {other} optimizer state, not {Name}; load it into a {other}<{typeof(T).Name}>.");
        }
        if (version != FormatVersion)
            throw new InvalidDataException($"{Name} state version {version} is not supported (this build reads version {FormatVersion}); save it again with this build.");
        if (size != sizeof(T))
            throw new InvalidDataException($"The {Name} state holds {size}-byte numbers but this optimizer's moments are {typeof(T).Name} ({sizeof(T)} bytes); load it into a {Name}<{(size == 4 ? "float" : size == 8 ? "double" : $"{size}-byte type")}>.");
        if (count != Count)
            throw new InvalidDataException($"The {Name} state holds moments for {count} parameters but this optimizer has {Count}; load state saved for a model of the same architecture, or start a fresh optimizer.");
        if (step < 0)
            throw new InvalidDataException($"The {Name} state has a negative step count ({step}); the checkpoint is damaged.");
        try
        {
            ReadAll(stream, _m, Count);
            ReadAll(stream, _v, Count);
        }
        catch (EndOfStreamException)
        {
            Reset();
            throw new InvalidDataException($"The {Name} state ends inside its moments (expected {2L * Count * sizeof(T)} bytes after the header); the checkpoint is truncated, and the optimizer's moments were cleared.");
        }
        _step = step;
    }

    // Span<byte> lengths are int, so large buffers go through in slices.
    const int Slice = 1 << 24;

    static void WriteAll(Stream s, T[] a, int n)
    {
        for (int i = 0; i < n; i += Slice) s.Write(MemoryMarshal.AsBytes(a.AsSpan(i, Math.Min(Slice, n - i))));
    }

    static void ReadAll(Stream s, T[] a, int n)
    {
        for (int i = 0; i < n; i += Slice) s.ReadExactly(MemoryMarshal.AsBytes(a.AsSpan(i, Math.Min(Slice, n - i))));
    }

    static void RequireLittleEndian()
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("Optimizer checkpoints are little-endian; this machine is big-endian.");
    }

    /// <summary>Float and double run the element loops on Vector&lt;T&gt;; element-wise IEEE operations round the
    /// same in a vector lane as in a scalar register, so both paths give the same bits.</summary>
    private protected static bool Vectorized => Vector.IsHardwareAccelerated && (typeof(T) == typeof(float) || typeof(T) == typeof(double));
}

/// <summary>AdamW as BERT trains with it: β1 0.9, β2 0.999, ε 1e-6, decoupled weight decay 0.01 applied only to
/// tensors whose ParamInfo.Decay is set (not biases, not LayerNorm weights). One fused pass over the flat buffers,
/// in parallel over fixed chunks; nothing is allocated per step.</summary>
/// <remarks>
/// The update is PyTorch's <c>torch.optim.AdamW</c> (amsgrad off), element by element, for step t:
/// <code>
/// p ← p·(1 − lr·λ)                      (decay first, on the old p; only where Decay)
/// m ← β1·m + (1 − β1)·g
/// v ← β2·v + (1 − β2)·g·g
/// p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε)
/// </code>
/// Scalars (bias corrections, step size, decay factor) are computed in double, then rounded to T; element
/// arithmetic is in T. It is mathematically PyTorch's formula, not bit-for-bit (PyTorch updates m with lerp).
/// Hugging Face's old <c>transformers.AdamW</c> differs in two places: it adds ε to √v before dividing by
/// √(1 − β2ᵗ) (so its effective ε is ε / √(1 − β2ᵗ)) and decays the already-updated p. Google's original BERT optimizer has
/// no bias correction at all.
/// </remarks>
public sealed unsafe class AdamW<T> : Optimizer<T> where T : unmanaged, IBinaryFloatingPointIeee754<T>
{
    internal const string MagicText = "BERTADMW";
    readonly Action<int> _chunk;
    // Per-step scalars, in T, read by the chunk bodies.
    T _b1, _c1, _b2, _c2, _stepSize, _bc2Sqrt, _eps, _keep;

    public AdamW(IReadOnlyList<ParamInfo> parameters, double beta1 = 0.9, double beta2 = 0.999, double epsilon = 1e-6, double weightDecay = 0.01)
        : base(parameters, beta1, beta2, epsilon, weightDecay) => _chunk = Chunk;

    public AdamW(ModelInfo model, double beta1 = 0.9, double beta2 = 0.999, double epsilon = 1e-6, double weightDecay = 0.01)
        : this(model.Parameters, beta1, beta2, epsilon, weightDecay) { }

    private protected override string Magic => MagicText;
    private protected override string Name => "AdamW";

    private protected override void Apply(double lr, long t)
    {
        double bc1 = 1 - Math.Pow(Beta1, t), bc2 = 1 - Math.Pow(Beta2, t);
        _b1 = T.CreateTruncating(Beta1); _c1 = T.CreateTruncating(1 - Beta1);
        _b2 = T.CreateTruncating(Beta2); _c2 = T.CreateTruncating(1 - Beta2);
        _stepSize = T.CreateTruncating(lr / bc1);
        _bc2Sqrt = T.CreateTruncating(Math.Sqrt(bc2));
        _eps = T.CreateTruncating(Epsilon);
        _keep = T.CreateTruncating(1 - lr * WeightDecay);
        ParameterChunks.Run(Layout.Chunks, _chunk);
    }

    void Chunk(int c)
    {
        var L = Layout;
        for (int k = L.FirstPiece[c]; k < L.FirstPiece[c + 1]; k++)
        {
            int s = L.PieceStart[k];
            // Multiplying by exactly 1 leaves a no-decay parameter's bits unchanged.
            Update(P + s, G + s, M + s, V + s, L.PieceEnd[k] - s, L.Decay[L.PieceTensor[k]] ? _keep : T.One);
        }
    }

    void Update(T* p, T* g, T* m, T* v, int n, T keep)
    {
        T b1 = _b1, c1 = _c1, b2 = _b2, c2 = _c2, stepSize = _stepSize, bc2Sqrt = _bc2Sqrt, eps = _eps;
        int i = 0;
        if (Vectorized)
        {
            Vector<T> vb1 = new(b1), vc1 = new(c1), vb2 = new(b2), vc2 = new(c2), vStep = new(stepSize), vBc2 = new(bc2Sqrt), vEps = new(eps), vKeep = new(keep);
            for (; i <= n - Vector<T>.Count; i += Vector<T>.Count)
            {
                var pi = Vector.Load(p + i) * vKeep;
                var gi = Vector.Load(g + i);
                var mi = vb1 * Vector.Load(m + i) + vc1 * gi;
                var vi = vb2 * Vector.Load(v + i) + vc2 * gi * gi;
                mi.Store(m + i); vi.Store(v + i);
                (pi - vStep * (mi / (Vector.SquareRoot(vi) / vBc2 + vEps))).Store(p + i);
            }
        }
        for (; i < n; i++)
        {
            T pi = p[i] * keep, gi = g[i];
            T mi = b1 * m[i] + c1 * gi;
            T vi = b2 * v[i] + c2 * gi * gi;
            m[i] = mi; v[i] = vi;
            p[i] = pi - stepSize * (mi / (T.Sqrt(vi) / bc2Sqrt + eps));
        }
    }
}

/// <summary>LAMB (You et al. 2019, "Large Batch Optimization for Deep Learning", Algorithm 2) for large batches:
/// the bias-corrected Adam direction plus decoupled weight decay, u = m̂ / (√v̂ + ε) + λ·w (λ only where Decay), then
/// each parameter tensor moves by lr·(‖w‖ / ‖u‖)·u, the ratio taken as 1 when either norm is 0. Defaults as BERT's
/// AdamW (β1 0.9, β2 0.999, ε 1e-6, λ 0.01); the trust ratio applies to every tensor.</summary>
/// <remarks>Two passes over fixed chunks: the first updates m and v and sums ‖w‖² and ‖u‖² per (chunk, tensor)
/// piece in double (u computed in blocks of 256 with Vector&lt;T&gt; into a stack buffer, its squares summed by a
/// scalar loop of fixed pattern, so the sums do not depend on the SIMD width); the pieces of each tensor are added
/// in buffer order (deterministic); the second pass recomputes u from the stored m, v (same operations, same bits)
/// and applies it, so no buffer of u's size is kept. Element arithmetic is in T; scalars in double rounded to T.</remarks>
public sealed unsafe class Lamb<T> : Optimizer<T> where T : unmanaged, IBinaryFloatingPointIeee754<T>
{
    internal const string MagicText = "BERTLAMB";
    readonly Action<int> _norms, _apply;
    readonly double[] _wSq, _uSq;       // per piece
    readonly double[] _tensorW, _tensorU; // per tensor
    readonly double[] _ratios;           // per tensor: trust ratio at the last step
    readonly T[] _scale;                 // per tensor: lr · trust ratio
    T _b1, _c1, _b2, _c2, _bc1, _bc2Sqrt, _eps, _wd;

    public Lamb(IReadOnlyList<ParamInfo> parameters, double beta1 = 0.9, double beta2 = 0.999, double epsilon = 1e-6, double weightDecay = 0.01)
        : base(parameters, beta1, beta2, epsilon, weightDecay)
    {
        _norms = Norms; _apply = ApplyChunk;
        _wSq = new double[Layout.PieceStart.Length]; _uSq = new double[Layout.PieceStart.Length];
        _tensorW = new double[Layout.Decay.Length]; _tensorU = new double[Layout.Decay.Length];
        _ratios = new double[Layout.Decay.Length]; _scale = new T[Layout.Decay.Length];
    }

    public Lamb(ModelInfo model, double beta1 = 0.9, double beta2 = 0.999, double epsilon = 1e-6, double weightDecay = 0.01)
        : this(model.Parameters, beta1, beta2, epsilon, weightDecay) { }

    private protected override string Magic => MagicText;
    private protected override string Name => "Lamb";

    /// <summary>The trust ratio ‖w‖ / ‖u‖ of each tensor (buffer order, empty tensors left out) at the last step.</summary>
    public ReadOnlySpan<double> LastTrustRatios => _ratios;

    private protected override void Apply(double lr, long t)
    {
        _b1 = T.CreateTruncating(Beta1); _c1 = T.CreateTruncating(1 - Beta1);
        _b2 = T.CreateTruncating(Beta2); _c2 = T.CreateTruncating(1 - Beta2);
        _bc1 = T.CreateTruncating(1 - Math.Pow(Beta1, t));
        _bc2Sqrt = T.CreateTruncating(Math.Sqrt(1 - Math.Pow(Beta2, t)));
        _eps = T.CreateTruncating(Epsilon);
        _wd = T.CreateTruncating(WeightDecay);
        ParameterChunks.Run(Layout.Chunks, _norms);

        Array.Clear(_tensorW); Array.Clear(_tensorU);
        for (int k = 0; k < _wSq.Length; k++)
        {
            _tensorW[Layout.PieceTensor[k]] += _wSq[k];
            _tensorU[Layout.PieceTensor[k]] += _uSq[k];
        }
        for (int j = 0; j < _scale.Length; j++)
        {
            double w = Math.Sqrt(_tensorW[j]), u = Math.Sqrt(_tensorU[j]);
            double ratio = w > 0 && u > 0 ? w / u : 1;
            _ratios[j] = ratio;
            _scale[j] = T.CreateTruncating(lr * ratio);
        }
        ParameterChunks.Run(Layout.Chunks, _apply);
    }

    // Elements per block: u for a block is computed with Vector<T> into a stack buffer, then its squares are summed
    // by the scalar, fixed-pattern GradientClipping.SumOfSquares, so the norms do not depend on the SIMD width.
    const int Block = 256;

    void Norms(int c)
    {
        var L = Layout;
        T* u = stackalloc T[Block];
        for (int k = L.FirstPiece[c]; k < L.FirstPiece[c + 1]; k++)
        {
            bool decay = L.Decay[L.PieceTensor[k]];
            double w2 = 0, u2 = 0;
            for (int s = L.PieceStart[k]; s < L.PieceEnd[k]; s += Block)
            {
                int n = Math.Min(Block, L.PieceEnd[k] - s);
                Moments(G + s, M + s, V + s, n);
                Direction(u, P + s, M + s, V + s, n, decay);
                w2 += GradientClipping.SumOfSquares(P + s, n);
                u2 += GradientClipping.SumOfSquares(u, n);
            }
            _wSq[k] = w2; _uSq[k] = u2;
        }
    }

    void ApplyChunk(int c)
    {
        var L = Layout;
        T* u = stackalloc T[Block];
        for (int k = L.FirstPiece[c]; k < L.FirstPiece[c + 1]; k++)
        {
            bool decay = L.Decay[L.PieceTensor[k]];
            T scale = _scale[L.PieceTensor[k]];
            for (int s = L.PieceStart[k]; s < L.PieceEnd[k]; s += Block)
            {
                int n = Math.Min(Block, L.PieceEnd[k] - s);
                Direction(u, P + s, M + s, V + s, n, decay);
                T* p = P + s;
                int i = 0;
                if (Vectorized)
                {
                    var vScale = new Vector<T>(scale);
                    for (; i <= n - Vector<T>.Count; i += Vector<T>.Count)
                        (Vector.Load(p + i) - vScale * Vector.Load(u + i)).Store(p + i);
                }
                for (; i < n; i++) p[i] -= scale * u[i];
            }
        }
    }

    /// <summary>m ← β1·m + (1 − β1)·g, v ← β2·v + (1 − β2)·g·g.</summary>
    void Moments(T* g, T* m, T* v, int n)
    {
        T b1 = _b1, c1 = _c1, b2 = _b2, c2 = _c2;
        int i = 0;
        if (Vectorized)
        {
            Vector<T> vb1 = new(b1), vc1 = new(c1), vb2 = new(b2), vc2 = new(c2);
            for (; i <= n - Vector<T>.Count; i += Vector<T>.Count)
            {
                var gi = Vector.Load(g + i);
                (vb1 * Vector.Load(m + i) + vc1 * gi).Store(m + i);
                (vb2 * Vector.Load(v + i) + vc2 * gi * gi).Store(v + i);
            }
        }
        for (; i < n; i++)
        {
            T gi = g[i];
            m[i] = b1 * m[i] + c1 * gi;
            v[i] = b2 * v[i] + c2 * gi * gi;
        }
    }

    /// <summary>u = (m / (1 − β1ᵗ)) / (√v / √(1 − β2ᵗ) + ε) [+ λ·w where decay], from the already-updated m and v.</summary>
    void Direction(T* u, T* w, T* m, T* v, int n, bool decay)
    {
        T bc1 = _bc1, bc2Sqrt = _bc2Sqrt, eps = _eps, wd = decay ? _wd : T.Zero;
        int i = 0;
        if (Vectorized)
        {
            Vector<T> vBc1 = new(bc1), vBc2 = new(bc2Sqrt), vEps = new(eps), vWd = new(wd);
            for (; i <= n - Vector<T>.Count; i += Vector<T>.Count)
            {
                var r = Vector.Load(m + i) / vBc1 / (Vector.SquareRoot(Vector.Load(v + i)) / vBc2 + vEps);
                (decay ? r + vWd * Vector.Load(w + i) : r).Store(u + i);
            }
        }
        for (; i < n; i++)
        {
            T r = m[i] / bc1 / (T.Sqrt(v[i]) / bc2Sqrt + eps);
            u[i] = decay ? r + wd * w[i] : r;
        }
    }
}
