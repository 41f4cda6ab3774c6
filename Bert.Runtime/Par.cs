using System.Runtime.CompilerServices;

namespace Bert.Runtime;

/// <summary>The body of a parallel loop over a range: a struct holding what the loop reads (pointers, sizes), so a
/// loop allocates nothing — no closure, no delegate.</summary>
public interface IRangeBody
{
    /// <summary>Runs elements lo .. hi - 1.</summary>
    void Run(int lo, int hi);
}

/// <summary>Deterministic parallel loops: the work is split by fixed sizes, never by the core count, and no two
/// tasks write one element, so results are bitwise the same on any machine.</summary>
/// <remarks>Loops run on a fixed set of worker threads (one fewer than the cores; the caller is the last) that
/// claim chunks from a shared counter, and allocate nothing after the workers have started: a training or
/// inference step has no garbage. One loop runs at a time; a loop started while another runs (a nested loop, or
/// another thread's) runs on its caller's thread, which gives the same result.</remarks>
public static unsafe class Par
{
    /// <summary>Elements per task for element-wise loops.</summary>
    public const int Grain = 16384;

    /// <summary>Columns per task for a loop over all rows of a column block: about Grain elements, at least 64
    /// columns (whole cache lines and vectors), a multiple of 16.</summary>
    public static int ColumnGrain(int rows) => Math.Max(64, (Grain / Math.Max(1, rows) + 15) & ~15);

    /// <summary>Columns per task for a loop whose tasks each take some columns over every row (a column sum): one task per
    /// thread, at least <see cref="ColumnGrain(int)"/> columns. A task walks its rows one after the other, and each row
    /// costs it some fixed work (the row's broadcast offsets, its dropout masks' Philox set-up) besides its columns: 64
    /// columns a row made BERT-Mini's fused backward kernels with a bias 1.5–2.4× slower than with a task per thread
    /// (bench/cpu --profile-train). Each column is summed over all rows in order however the columns are split, so the
    /// split may depend on the thread count without changing a bit.</summary>
    public static int ColumnGrain(int rows, int columns) =>
        Math.Max(ColumnGrain(rows), (columns / (Workers + 1) + 15) & ~15);

    /// <summary>Runs body over 0 .. n - 1 in chunks of grain elements (the last may be shorter).</summary>
    public static void For<TBody>(int n, int grain, ref TBody body) where TBody : struct, IRangeBody
    {
        if (n <= 0) return;
        if (grain < 1) grain = 1;
        if (n <= grain || Workers == 0 || Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
        {
            for (int lo = 0; lo < n; lo += grain) body.Run(lo, Math.Min(n, lo + grain));
            return;
        }
        try
        {
            // body lives on the caller's stack (a ref to a struct local), which stays put until every worker is done.
            Run(n, grain, Unsafe.AsPointer(ref body), &Invoke<TBody>);
        }
        finally { Volatile.Write(ref _busy, 0); }
    }

    /// <summary>Runs body(i) for i in 0 .. count - 1, each index a task.</summary>
    public static void For<TBody>(int count, ref TBody body) where TBody : struct, IRangeBody => For(count, 1, ref body);

    /// <summary>As For with a delegate: allocation-free only when the delegate is cached (a lambda that captures
    /// locals allocates its closure at the call).</summary>
    public static void For(int n, int grain, Action<int, int> body)
    {
        var b = new DelegateBody(body);
        For(n, grain, ref b);
    }

    readonly struct DelegateBody(Action<int, int> body) : IRangeBody
    {
        public void Run(int lo, int hi) => body(lo, hi);
    }

    static void Invoke<TBody>(void* body, int lo, int hi) where TBody : struct, IRangeBody => Unsafe.AsRef<TBody>(body).Run(lo, hi);

    // ---- the pool ----

    static readonly int Workers = Math.Max(0, Environment.ProcessorCount - 1);
    static readonly object Gate = new();
    static int _busy;                 // 1 while a loop runs on the pool
    static int _started;              // workers started
    static volatile int _generation;  // bumped per loop; workers wake on a change
    static int _active;               // workers inside the current loop
    // The current loop (valid while _busy).
    static void* _body;
    static delegate*<void*, int, int, void> _invoke;
    static int _n, _grain, _chunks, _next, _remaining;
    static Exception? _error;         // the first exception a chunk threw, rethrown by the caller

    static void Run(int n, int grain, void* body, delegate*<void*, int, int, void> invoke)
    {
        if (Volatile.Read(ref _started) == 0) Start();
        _body = body; _invoke = invoke; _n = n; _grain = grain;
        _chunks = (int)(((long)n + grain - 1) / grain);
        _next = 0;
        Volatile.Write(ref _remaining, _chunks);
        lock (Gate) { _generation++; Monitor.PulseAll(Gate); }
        Work();
        // Every chunk is done and no worker still holds this loop's fields when both counters are zero.
        var spin = new SpinWait();
        while (Volatile.Read(ref _remaining) != 0 || Volatile.Read(ref _active) != 0) spin.SpinOnce(sleep1Threshold: -1);
        if (_error is { } e) { _error = null; System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e); }
    }

    static void Work()
    {
        int c;
        while ((c = Interlocked.Increment(ref _next) - 1) < _chunks)
        {
            int lo = c * _grain;
            try { _invoke(_body, lo, Math.Min(_n, lo + _grain)); }
            catch (Exception e) { Interlocked.CompareExchange(ref _error, e, null); }
            finally { Interlocked.Decrement(ref _remaining); }
        }
    }

    static void Start()
    {
        lock (Gate)
        {
            if (_started != 0) return;
            for (int i = 0; i < Workers; i++)
                new Thread(WorkerLoop) { IsBackground = true, Name = $"Bert.Par {i}" }.Start();
            Volatile.Write(ref _started, 1);
        }
    }

    static void WorkerLoop()
    {
        int seen = 0;
        while (true)
        {
            // Spin a little (loops come back to back within a step), then sleep until the next loop.
            var spin = new SpinWait();
            while (_generation == seen && !spin.NextSpinWillYield) spin.SpinOnce(sleep1Threshold: -1);
            if (_generation == seen)
                lock (Gate) { while (_generation == seen) Monitor.Wait(Gate); }
            int g = _generation;
            seen = g;
            Interlocked.Increment(ref _active);
            // Join only the loop that is running now: a loop that ended (and its fields) is left alone.
            if (_generation == g && Volatile.Read(ref _busy) == 1 && Volatile.Read(ref _remaining) > 0) Work();
            Interlocked.Decrement(ref _active);
        }
    }
}
