using System.Diagnostics;

namespace Bert.Tests.Support;

/// <summary>bert.dll (beside the tests) in a process of its own, for what the in-process CliTests.Run cannot show: a
/// redirected standard input (a pipe), a working directory of its own.</summary>
public static class BertProcess
{
    /// <param name="stdin">bytes piped to standard input, then closed; null: not redirected.</param>
    public static (int Code, string Out, string Err) Run(string[] args, byte[]? stdin = null, string? workingDirectory = null)
    {
        var psi = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet")
        {
            RedirectStandardInput = stdin is not null, RedirectStandardOutput = true, RedirectStandardError = true,
            WorkingDirectory = workingDirectory ?? "",
        };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "bert.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var output = p.StandardOutput.ReadToEndAsync();
        var error = p.StandardError.ReadToEndAsync();
        if (stdin is not null)
        {
            p.StandardInput.BaseStream.Write(stdin);
            p.StandardInput.Close();
        }
        if (!p.WaitForExit(120_000))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"bert {string.Join(' ', args)} did not finish in 2 minutes.");
        }
        return (p.ExitCode, output.Result, error.Result);
    }
}
