namespace Bert.Data;

/// <summary>A data or vocabulary file the user supplied cannot be used. The message is one sentence naming the
/// file (and line, when there is one) and what to do about it.</summary>
public sealed class DataException : Exception
{
    public DataException(string message, string? file = null, int line = 0, Exception? inner = null)
        : base(message, inner)
    {
        File = file;
        Line = line;
    }

    /// <summary>The file (or embedded resource name) at fault, when known.</summary>
    public string? File { get; }

    /// <summary>1-based line number at fault; 0 when the problem is the whole file.</summary>
    public int Line { get; }
}
