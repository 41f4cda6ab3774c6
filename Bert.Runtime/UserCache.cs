namespace Bert.Runtime;

/// <summary>Where `bert` keeps what it can make again but would rather not (compiled kernels, tokenized corpora): a folder
/// named by an environment variable of its own, else <c>$XDG_CACHE_HOME/bert/&lt;name&gt;</c>, else
/// <c>~/.cache/bert/&lt;name&gt;</c>.</summary>
public static class UserCache
{
    /// <param name="variable">The environment variable that names the folder outright (e.g. BERT_KERNEL_CACHE).</param>
    /// <param name="name">The folder's name under the user's cache (e.g. kernels).</param>
    /// <param name="getEnvironmentVariable">The environment (tests give their own).</param>
    public static string Directory(string variable, string name, Func<string, string?>? getEnvironmentVariable = null)
    {
        getEnvironmentVariable ??= Environment.GetEnvironmentVariable;
        if (Set(getEnvironmentVariable(variable)) is { } dir) return dir;
        if (Set(getEnvironmentVariable("XDG_CACHE_HOME")) is { } xdg) return Path.Combine(xdg, "bert", name);
        string home = Set(getEnvironmentVariable("HOME")) ?? Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        return Path.Combine(home, ".cache", "bert", name);
    }

    /// <summary>The value, trimmed, or null when it is unset or blank.</summary>
    public static string? Set(string? value) => string.IsNullOrWhiteSpace(value) ? null : value.Trim();

    /// <summary>Appends <paramref name="field"/> to a cache key's hash as its UTF-8 bytes after their count (8 bytes,
    /// little-endian), so that no two different lists of fields hash the same bytes.</summary>
    public static void AppendField(this System.Security.Cryptography.IncrementalHash hash, string field)
    {
        byte[] bytes = System.Text.Encoding.UTF8.GetBytes(field);
        Span<byte> count = stackalloc byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(count, bytes.Length);
        hash.AppendData(count);
        hash.AppendData(bytes);
    }
}
