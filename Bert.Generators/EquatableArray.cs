using System;
using System.Collections;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;

namespace Bert.Generators;

/// <summary>An immutable array compared by value, so pipeline models stay equatable (ComputeSharp's pattern).</summary>
public readonly struct EquatableArray<T> : IEquatable<EquatableArray<T>>, IEnumerable<T> where T : IEquatable<T>
{
    private readonly T[]? _items;
    public EquatableArray(IEnumerable<T> items) => _items = items.ToArray();
    public static EquatableArray<T> Empty => new(Array.Empty<T>());
    public int Count => _items?.Length ?? 0;
    public T this[int i] => _items![i];
    public bool Equals(EquatableArray<T> other)
    {
        var a = _items ?? Array.Empty<T>(); var b = other._items ?? Array.Empty<T>();
        if (a.Length != b.Length) return false;
        for (int i = 0; i < a.Length; i++) if (!EqualityComparer<T>.Default.Equals(a[i], b[i])) return false;
        return true;
    }
    public override bool Equals(object? obj) => obj is EquatableArray<T> o && Equals(o);
    public override int GetHashCode()
    {
        int h = 17;
        foreach (var x in _items ?? Array.Empty<T>()) h = unchecked(h * 31 + (x?.GetHashCode() ?? 0));
        return h;
    }
    public IEnumerator<T> GetEnumerator() => ((IEnumerable<T>)(_items ?? Array.Empty<T>())).GetEnumerator();
    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
    public static bool operator ==(EquatableArray<T> a, EquatableArray<T> b) => a.Equals(b);
    public static bool operator !=(EquatableArray<T> a, EquatableArray<T> b) => !a.Equals(b);
}

public static class EquatableArray
{
    public static EquatableArray<T> ToEquatable<T>(this IEnumerable<T> items) where T : IEquatable<T> => new(items);
}

public static class KeyValuePairExtensions
{
    public static void Deconstruct<TK, TV>(this KeyValuePair<TK, TV> kv, out TK key, out TV value) { key = kv.Key; value = kv.Value; }
}
