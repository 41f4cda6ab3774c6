using System.Buffers.Binary;
using System.Numerics;
using System.Text;

namespace Bert.Runtime.Checkpoints;

/// <summary>A global a pickle names (<c>module.name</c>): a class or function. The reader never runs one; the
/// unpickler's caller says which it accepts and what each builds.</summary>
sealed record PyGlobal(string Module, string Name)
{
    public override string ToString() => $"{Module}.{Name}";
}

/// <summary>A pickled dict, in insertion order (as Python's dicts and OrderedDict keep it).</summary>
sealed class PyDict
{
    public readonly List<KeyValuePair<object?, object?>> Items = [];
    readonly Dictionary<object, int> _at = [];   // key → its place in Items (a null key is looked for in Items)

    public void Set(object? key, object? value)
    {
        int i = key is null ? Items.FindIndex(kv => kv.Key is null) : _at.GetValueOrDefault(key, -1);
        if (i >= 0) { Items[i] = new(key, value); return; }
        if (key is not null) _at[key] = Items.Count;
        Items.Add(new(key, value));
    }
}

/// <summary>A data-only unpickler: Python's pickle virtual machine for the opcodes of protocols 0–5 that data needs
/// (numbers, strings, bytes, tuples, lists, dicts, memo, frames), where a global, a call (REDUCE, NEWOBJ) and a
/// persistent id go to callbacks that build plain values or refuse, and BUILD's state is dropped. Nothing is ever imported or executed, so a
/// hostile file can at worst be refused. Errors are <see cref="FormatException"/> with the byte offset; the caller
/// names the file.</summary>
sealed class Unpickler
{
    readonly Stream _s;
    readonly long _end;
    readonly Func<PyGlobal, object> _global;
    readonly Func<object, object?[], object?> _call;
    readonly Func<object?, object?> _persistent;
    readonly List<object?> _stack = [];
    readonly List<int> _marks = [];
    readonly Dictionary<long, object?> _memo = [];

    /// <param name="global">what a GLOBAL or STACK_GLOBAL pushes (throw to refuse a global).</param>
    /// <param name="call">REDUCE and NEWOBJ: the callable (whatever <paramref name="global"/> returned) and its arguments.</param>
    /// <param name="persistent">BINPERSID and PERSID: the persistent id → the object it stands for.</param>
    public Unpickler(Stream s, Func<PyGlobal, object> global, Func<object, object?[], object?> call, Func<object?, object?> persistent)
    {
        _s = s; _end = s.Length; _global = global; _call = call; _persistent = persistent;
    }

    FormatException Bad(string what) => new($"{what} (at byte {_s.Position})");

    int Byte()
    {
        int b = _s.ReadByte();
        if (b < 0) throw Bad("the pickle ends before its STOP opcode");
        return b;
    }

    /// <summary>The longest string, byte string or number an opcode may hold: far more than any name or number of a
    /// state dict (its tensors' data lie outside the pickle), far less than an allocation to fear.</summary>
    const long MaxLength = 64L << 20;

    byte[] Bytes(long n)
    {
        if (n < 0 || n > _end - _s.Position) throw Bad($"a length of {n} bytes runs past the end of the data");
        if (n > MaxLength) throw Bad($"a length of {n} bytes is more than a state dict's pickle holds");
        var b = new byte[n];
        _s.ReadExactly(b);
        return b;
    }

    long U(int n)
    {
        var b = Bytes(n);
        long v = 0;
        for (int i = n - 1; i >= 0; i--) v = (v << 8) | b[i];
        return v;
    }

    string Line()
    {
        var sb = new StringBuilder();
        for (int b; (b = Byte()) != '\n';)
        {
            if (sb.Length > 4096) throw Bad("a text line is longer than any name or number");
            sb.Append((char)b);
        }
        return sb.ToString();
    }

    object? Pop()
    {
        if (_stack.Count == 0 || (_marks.Count > 0 && _marks[^1] == _stack.Count)) throw Bad("an opcode pops from an empty stack");
        var v = _stack[^1];
        _stack.RemoveAt(_stack.Count - 1);
        return v;
    }

    object? Top => _stack.Count > 0 ? _stack[^1] : throw Bad("an opcode reads an empty stack");

    object?[] PopMark()
    {
        if (_marks.Count == 0) throw Bad("an opcode needs a MARK that is not there");
        int m = _marks[^1];
        _marks.RemoveAt(_marks.Count - 1);
        var items = _stack.GetRange(m, _stack.Count - m).ToArray();
        _stack.RemoveRange(m, _stack.Count - m);
        return items;
    }

    static object Int(BigInteger v) => v >= long.MinValue && v <= long.MaxValue ? (object)(long)v : v;

    static string Latin1(byte[] b) => Encoding.Latin1.GetString(b);

    static string Utf8(byte[] b, Unpickler u)
    {
        try { return new UTF8Encoding(false, true).GetString(b); }
        catch (DecoderFallbackException) { throw u.Bad("a string is not valid UTF-8"); }
    }

    void Memo(long key) => _memo[key] = Top;

    object? Get(long key) => _memo.TryGetValue(key, out var v) ? v : throw Bad($"memo entry {key} is read before it is written");

    /// <summary>Runs the pickle from the stream's position to its STOP and returns the object it built.</summary>
    public object? Load()
    {
        while (true)
        {
            int op = Byte();
            switch (op)
            {
                case 0x80: if (Byte() > 5) throw Bad("the pickle protocol is newer than 5"); break;     // PROTO
                case 0x95: U(8); break;                                                                 // FRAME (a hint)
                case '.': return _stack.Count == 1 && _marks.Count == 0 ? Pop() : throw Bad("STOP leaves other than one object");
                case '(': _marks.Add(_stack.Count); break;                                             // MARK
                case '0': Pop(); break;                                                                 // POP
                case '1': PopMark(); break;                                                             // POP_MARK
                case '2': _stack.Add(Top); break;                                                       // DUP
                case 'N': _stack.Add(null); break;
                case 0x88: _stack.Add(true); break;
                case 0x89: _stack.Add(false); break;
                case 'J': _stack.Add((long)(int)U(4)); break;                                           // BININT
                case 'K': _stack.Add(U(1)); break;                                                      // BININT1
                case 'M': _stack.Add(U(2)); break;                                                      // BININT2
                case 0x8a: _stack.Add(Int(new BigInteger(Bytes(U(1)), isUnsigned: false, isBigEndian: false))); break;   // LONG1
                case 0x8b: _stack.Add(Int(new BigInteger(Bytes(U(4)), isUnsigned: false, isBigEndian: false))); break;   // LONG4
                case 'I':                                                                               // INT (text)
                {
                    string t = Line();
                    _stack.Add(t == "01" ? true : t == "00" ? false : long.TryParse(t, out var v) ? v : throw Bad($"INT '{t}' is not a number"));
                    break;
                }
                case 'L':                                                                               // LONG (text)
                {
                    string t = Line().TrimEnd('L');
                    _stack.Add(BigInteger.TryParse(t, out var v) ? Int(v) : throw Bad($"LONG '{t}' is not a number"));
                    break;
                }
                case 'G': _stack.Add(BinaryPrimitives.ReadDoubleBigEndian(Bytes(8))); break;            // BINFLOAT
                case 'X': _stack.Add(Utf8(Bytes(U(4)), this)); break;                                   // BINUNICODE
                case 0x8c: _stack.Add(Utf8(Bytes(U(1)), this)); break;                                  // SHORT_BINUNICODE
                case 0x8d: _stack.Add(Utf8(Bytes(U(8)), this)); break;                                  // BINUNICODE8
                case 'T': _stack.Add(Latin1(Bytes((int)U(4)))); break;                                  // BINSTRING
                case 'U': _stack.Add(Latin1(Bytes(U(1)))); break;                                       // SHORT_BINSTRING
                case 'B': _stack.Add(Bytes(U(4))); break;                                               // BINBYTES
                case 'C': _stack.Add(Bytes(U(1))); break;                                               // SHORT_BINBYTES
                case 0x8e: _stack.Add(Bytes(U(8))); break;                                              // BINBYTES8
                case '}': _stack.Add(new PyDict()); break;                                              // EMPTY_DICT
                case ']': _stack.Add(new List<object?>()); break;                                       // EMPTY_LIST
                case ')': _stack.Add(Array.Empty<object?>()); break;                                    // EMPTY_TUPLE
                case 't': _stack.Add(PopMark()); break;                                                 // TUPLE
                case 0x85: { var a = Pop(); _stack.Add(new[] { a }); break; }                           // TUPLE1
                case 0x86: { var b = Pop(); var a = Pop(); _stack.Add(new[] { a, b }); break; }         // TUPLE2
                case 0x87: { var c = Pop(); var b = Pop(); var a = Pop(); _stack.Add(new[] { a, b, c }); break; }   // TUPLE3
                case 'l': _stack.Add(new List<object?>(PopMark())); break;                              // LIST
                case 'd':                                                                               // DICT
                {
                    var items = PopMark();
                    var d = new PyDict();
                    SetItems(d, items);
                    _stack.Add(d);
                    break;
                }
                case 'a': { var v = Pop(); AsList(Top).Add(v); break; }                                 // APPEND
                case 'e': { var items = PopMark(); AsList(Top).AddRange(items); break; }                // APPENDS
                case 's': { var v = Pop(); var k = Pop(); AsDict(Top).Set(k, v); break; }               // SETITEM
                case 'u': { var items = PopMark(); SetItems(AsDict(Top), items); break; }               // SETITEMS
                case 'q': Memo(U(1)); break;                                                            // BINPUT
                case 'r': Memo(U(4)); break;                                                            // LONG_BINPUT
                case 'p': Memo(long.TryParse(Line(), out var pk) ? pk : throw Bad("PUT's key is not a number")); break;
                case 0x94: Memo(_memo.Count); break;                                                    // MEMOIZE
                case 'h': _stack.Add(Get(U(1))); break;                                                 // BINGET
                case 'j': _stack.Add(Get(U(4))); break;                                                 // LONG_BINGET
                case 'g': _stack.Add(Get(long.TryParse(Line(), out var gk) ? gk : throw Bad("GET's key is not a number"))); break;
                case 'c':                                                                               // GLOBAL
                {
                    string module = Line(), name = Line();
                    _stack.Add(_global(new PyGlobal(module, name)));
                    break;
                }
                case 0x93:                                                                              // STACK_GLOBAL
                {
                    var name = Pop() as string ?? throw Bad("STACK_GLOBAL's name is not a string");
                    var module = Pop() as string ?? throw Bad("STACK_GLOBAL's module is not a string");
                    _stack.Add(_global(new PyGlobal(module, name)));
                    break;
                }
                case 'R':                                                                               // REDUCE
                case 0x81:                                                                              // NEWOBJ
                {
                    var args = Pop() as object?[] ?? throw Bad("a call's arguments are not a tuple");
                    var f = Pop() ?? throw Bad("a call's callable is None");
                    _stack.Add(_call(f, args));
                    break;
                }
                case 'b': Pop(); _ = Top; break;                                                        // BUILD: the state is dropped (a dict's _metadata)
                case 'Q': _stack.Add(_persistent(Pop())); break;                                        // BINPERSID
                case 'P': _stack.Add(_persistent(Line())); break;                                       // PERSID
                default: throw Bad($"opcode 0x{op:x2} is not one that pickled data of tensors uses");
            }
        }
    }

    List<object?> AsList(object? o) => o as List<object?> ?? throw Bad("APPEND onto something that is not a list");

    PyDict AsDict(object? o) => o as PyDict ?? throw Bad("SETITEM onto something that is not a dict");

    void SetItems(PyDict d, object?[] items)
    {
        if (items.Length % 2 != 0) throw Bad("a dict's items are not key-value pairs");
        for (int i = 0; i < items.Length; i += 2) d.Set(items[i], items[i + 1]);
    }
}
