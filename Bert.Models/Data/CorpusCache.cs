using System.Globalization;
using System.Security.Cryptography;
using Bert.Runtime;
using Bert.Text;

namespace Bert.Data;

/// <summary>Tokenized pre-training corpora kept on disk, so that a run resumed, or another run on the same files
/// (another model size, another seed), reads the pieces back in seconds instead of tokenizing the text again (minutes
/// for gigabytes). An entry is named by what the corpus is (its files' full paths in order, named corpora by name, the
/// vocabulary and tokenizer settings) and stamped with a key over everything else its pieces depend on: each file's
/// length, last-write time and first and last 64 KiB, and this build of the code and runtime. An entry whose key no
/// longer matches (a file edited, a shard of the same name replaced, a new build) is tokenized again and replaced, so a
/// corpus has one entry however often it changes. A file that changes while it is read is not cached. Only corpora of
/// at least <see cref="MinSourceBytes"/> of files are kept (the embedded ones tokenize in a second). The directory is
/// <c>$BERT_CORPUS_CACHE</c> (<c>off</c>: no cache), else <c>$XDG_CACHE_HOME/bert/corpora</c>, else
/// <c>~/.cache/bert/corpora</c>. A file is written under a temporary name and renamed, and checked whole (its checksum)
/// when it is read; one that cannot be written (no space, no permission) costs a note, never the run.</summary>
public sealed class CorpusCache
{
    public const string EnvironmentVariable = "BERT_CORPUS_CACHE";
    const string Extension = ".corpus";

    /// <summary>Files of at least this many bytes in all (64 MiB: some 15 s of tokenizing on two cores) are cached.</summary>
    public static long MinSourceBytes { get; set; } = 64L << 20;

    readonly byte[] _key;
    readonly IReadOnlyList<string> _specs;
    readonly Func<string, bool> _isName;
    readonly WordPiece _tokenizer;

    CorpusCache(string directory, byte[] name, byte[] key, IReadOnlyList<string> specs, Func<string, bool> isName, WordPiece tokenizer)
    {
        Directory = directory; _key = key; _specs = specs; _isName = isName; _tokenizer = tokenizer;
        Path = System.IO.Path.Combine(directory, Convert.ToHexStringLower(name) + Extension);
    }

    /// <summary>Where corpora are kept.</summary>
    public string Directory { get; }

    /// <summary>This corpus's file.</summary>
    public string Path { get; }

    /// <summary>$BERT_CORPUS_CACHE, else $XDG_CACHE_HOME/bert/corpora, else ~/.cache/bert/corpora; null when
    /// $BERT_CORPUS_CACHE is <c>off</c>.</summary>
    public static string? DefaultDirectory(Func<string, string?>? getEnvironmentVariable = null)
    {
        getEnvironmentVariable ??= Environment.GetEnvironmentVariable;
        return UserCache.Set(getEnvironmentVariable(EnvironmentVariable)) is { } dir && dir.Equals("off", StringComparison.OrdinalIgnoreCase) ? null
            : UserCache.Directory(EnvironmentVariable, "corpora", getEnvironmentVariable);
    }

    /// <summary>The cache entry for the corpus of <paramref name="files"/> (named corpora and files, folders already
    /// expanded) under <paramref name="tokenizer"/>; null when caching is off (<paramref name="directory"/> null: the
    /// default's) or the files are smaller than <paramref name="minSourceBytes"/> (null: <see cref="MinSourceBytes"/>). A
    /// file that does not exist is left to the reader to report.</summary>
    public static CorpusCache? For(IReadOnlyList<string> files, Func<string, bool> isName, WordPiece tokenizer, string? directory = null, long? minSourceBytes = null)
    {
        directory ??= DefaultDirectory();
        if (directory is null) return null;
        long bytes = 0;
        foreach (var f in files)
            if (!isName(f) && File.Exists(f)) bytes += new FileInfo(f).Length;
        if (bytes < (minSourceBytes ?? MinSourceBytes)) return null;
        return Identify(files, isName, tokenizer) is { } id ? new CorpusCache(directory, id.Name, id.Key, files, isName, tokenizer) : null;
    }

    /// <summary>The entry's name, from what the corpus is (its files' paths, its named corpora, the tokenizer), and its
    /// key, from everything its pieces depend on besides (the files' lengths, times and first and last 64 KiB; this build
    /// of the code and the runtime): a corpus whose files or build change keeps one entry, replaced, not one an edit.
    /// Null when a file is missing or cannot be read (the reader says so in its own words).</summary>
    static (byte[] Name, byte[] Key)? Identify(IReadOnlyList<string> files, Func<string, bool> isName, WordPiece tokenizer)
    {
        using var name = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        using var key = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        name.AppendField("bert-corpus-cache-v1");
        name.AppendField(string.Join('\n', tokenizer.Vocab));
        var st = tokenizer.Settings;
        name.AppendField(FormattableString.Invariant($"lower={st.LowerCase} accents={st.StripAccents} word={st.MaxWordChars}"));
        // The code that splits and tokenizes the text: this build's, the tokenizer package's, the runtime's.
        key.AppendField(typeof(CorpusCache).Assembly.ManifestModule.ModuleVersionId.ToString());
        key.AppendField(typeof(Microsoft.ML.Tokenizers.BertTokenizer).Assembly.ManifestModule.ModuleVersionId.ToString());
        key.AppendField(Environment.Version.ToString());
        var ends = new byte[64 << 10];
        foreach (var f in files)
        {
            if (isName(f)) { name.AppendField("name:" + f.ToLowerInvariant()); continue; }
            var info = new FileInfo(f);
            if (!info.Exists) return null;
            name.AppendField("file:" + info.FullName);
            key.AppendField(info.Length.ToString(CultureInfo.InvariantCulture) + "@" + info.LastWriteTimeUtc.Ticks.ToString(CultureInfo.InvariantCulture));
            try
            {
                using var handle = File.OpenHandle(f);
                foreach (long at in new[] { 0, Math.Max(0, info.Length - ends.Length) })
                {
                    int n = RandomAccess.Read(handle, ends, at);
                    key.AppendData(ends, 0, n);
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
        }
        var nameHash = name.GetHashAndReset();
        key.AppendData(nameHash);
        return (nameHash, key.GetHashAndReset());
    }

    /// <summary>The cached corpus, or null when there is none (or it cannot be used: <paramref name="problem"/> then says
    /// why, and the caller tokenizes afresh).</summary>
    public TokenizedCorpus? TryLoad(out string? problem)
    {
        problem = null;
        if (!File.Exists(Path)) return null;
        try
        {
            using var stream = new FileStream(Path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
            var corpus = TokenizedCorpus.Read(stream, _key, _tokenizer.VocabSize, out string? why);
            if (corpus is null) problem = $"the cached corpus {Path} cannot be used ({why}); tokenizing again";
            return corpus;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            problem = $"the cached corpus {Path} cannot be read ({e.Message.TrimEnd('.')}); tokenizing again";
            return null;
        }
    }

    /// <summary>Keeps <paramref name="corpus"/>, made from the files as they were when this entry was made, unless one
    /// has changed since (its length, time or ends), replacing what the entry held: returns the bytes written, or null with the reason in
    /// <paramref name="problem"/> (null too when a file changed: nothing to say, the next run tokenizes again).</summary>
    public long? Save(TokenizedCorpus corpus, out string? problem)
    {
        problem = null;
        if (Identify(_specs, _isName, _tokenizer) is not { } now || !now.Key.AsSpan().SequenceEqual(_key))
        {
            problem = "a corpus file changed while it was read, so it is not cached";
            return null;
        }
        string temp = Path + "." + Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "." + Guid.NewGuid().ToString("N")[..8] + ".tmp";
        try
        {
            System.IO.Directory.CreateDirectory(Directory);
            RemoveStaleTemporaries();
            long need = corpus.Pieces * (corpus.VocabSize <= ushort.MaxValue + 1 ? 2 : 4) + 4L * (corpus.Documents + corpus.Sentences);
            if (FreeBytes(Directory) is long free && free < need + (256L << 20))
            {
                problem = $"the corpus is not cached: {Directory} has {free / 1048576.0:N0} MiB free, and it needs {need / 1048576.0:N0} MiB with some to spare";
                return null;
            }
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                corpus.Write(stream, _key);   // a file cut short by a crash fails its checksum, so no flush to disk here
            }
            long written = new FileInfo(temp).Length;
            File.Move(temp, Path, overwrite: true);
            return written;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            try { File.Delete(temp); } catch (Exception) { }
            problem = $"the corpus is not cached in {Directory} ({e.Message.TrimEnd('.')}); the next run on these files tokenizes them again";
            return null;
        }
    }

    /// <summary>Deletes the temporary files of writes that never finished (a process killed while it wrote), an hour old
    /// or more: a write in progress elsewhere is younger.</summary>
    void RemoveStaleTemporaries()
    {
        foreach (var f in System.IO.Directory.EnumerateFiles(Directory, "*" + Extension + ".*.tmp"))
            try { if (File.GetLastWriteTimeUtc(f) < DateTime.UtcNow.AddHours(-1)) File.Delete(f); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    /// <summary>The space free where <paramref name="directory"/> is, or null when the system will not say.</summary>
    static long? FreeBytes(string directory)
    {
        try { return new DriveInfo(System.IO.Path.GetFullPath(directory)).AvailableFreeSpace; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException) { return null; }
    }
}
