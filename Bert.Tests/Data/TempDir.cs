namespace Bert.Tests.Data;

/// <summary>A fresh folder under the system temp directory for tests that write files.</summary>
public static class TempDir
{
    public static string Create()
    {
        string dir = Path.Combine(Path.GetTempPath(), "bert-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return dir;
    }

    public static void Delete(string dir)
    {
        try { Directory.Delete(dir, recursive: true); }
        catch (IOException) { }
    }
}
