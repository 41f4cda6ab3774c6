using System.Diagnostics;
using Xunit;
using Xunit.Abstractions;

namespace Bert.Tests.Packaging;

/// <summary>Packs Bert as NuGet packages and builds a small consumer project against them, as a user would:
/// one package reference, a model declared in the user's code, compiled by the shipped generator, run.</summary>
public class ConsumerTests(ITestOutputHelper output)
{
    internal static string RepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Bert.sln"))) return d.FullName;
        throw new InvalidOperationException("Bert.sln not found above " + AppContext.BaseDirectory);
    }

    (int Code, string Text) Dotnet(string args, string dir)
    {
        var psi = new ProcessStartInfo("dotnet", args) { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        p.WaitForExit();
        var text = stdout.Result + stderr.Result;
        output.WriteLine($"$ dotnet {args}\n{text}");
        return (p.ExitCode, text);
    }

    const string Program = """
        using Bert.Dsl;
        using static Bert.Dsl.Ops;

        var m = Toy.Create<float>();
        m.InitParameters(1);
        m.Bind(2, 3);
        m.SetInput("ids", new[] { 1, 2, 3, 4, 5, 6 });
        m.SetInput("labels", new[] { 0, 1 });
        float before = m.Forward()[0];
        for (int step = 0; step < 50; step++)
        {
            m.ZeroGradients();
            m.Forward();
            m.Backward();
            var p = m.Parameters; var g = m.Gradients;
            for (int i = 0; i < p.Length; i++) p[i] -= 0.5f * g[i];
        }
        float after = m.Forward()[0];
        System.Console.WriteLine($"loss {before:F4} -> {after:F4} params {Toy.Info.ParameterCount}");

        [Model]
        public partial class Toy
        {
            public const int Vocab = 10, Hidden = 8, MaxLen = 4, Classes = 2;
            [Param(Vocab, Hidden)] Tensor Emb;
            [Param(Classes, Hidden)] Tensor W;
            [Param(Classes, Init = Init.Zeros)] Tensor B;
            public Tensor Forward(Tokens ids, Labels labels) => CrossEntropy(Linear(Swish(First(Embed(Emb, ids))), W, B), labels);
            [Pointwise] static float Swish(float x) => x / (1f + Scalar.Exp(-x));
        }
        """;

    [Fact]
    public void PackedPackages_LetAUserDeclareCompileAndTrainAModel()
    {
        var root = RepoRoot();
        var work = Directory.CreateTempSubdirectory("bert-consumer-").FullName;
        try
        {
            var feed = Path.Combine(work, "feed");
            var pack = Dotnet($"pack \"{Path.Combine(root, "Bert.sln")}\" -c Release -o \"{feed}\" -p:Version=0.0.0-test", root);
            Assert.True(pack.Code == 0, "dotnet pack failed:\n" + pack.Text);
            Assert.True(File.Exists(Path.Combine(feed, "Bert.Runtime.0.0.0-test.nupkg")), "no Bert.Runtime package");

            var app = Path.Combine(work, "app");
            Directory.CreateDirectory(app);
            File.WriteAllText(Path.Combine(app, "App.csproj"), """
                <Project Sdk="Microsoft.NET.Sdk">
                  <PropertyGroup>
                    <OutputType>Exe</OutputType>
                    <TargetFramework>net10.0</TargetFramework>
                    <Nullable>enable</Nullable>
                    <RestorePackagesPath>packages</RestorePackagesPath>
                  </PropertyGroup>
                  <ItemGroup>
                    <PackageReference Include="Bert.Runtime" Version="0.0.0-test" />
                  </ItemGroup>
                </Project>
                """);
            var globalPackages = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
                ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
            File.WriteAllText(Path.Combine(app, "nuget.config"), $"""
                <configuration>
                  <packageSources>
                    <add key="bert" value="{feed}" />
                    <add key="cache" value="{globalPackages}" />
                  </packageSources>
                </configuration>
                """);
            File.WriteAllText(Path.Combine(app, "Program.cs"), Program);
            var run = Dotnet("run -c Release", app);
            Assert.True(run.Code == 0, "the consumer did not build or run:\n" + run.Text);
            var line = run.Text.Split('\n').First(l => l.StartsWith("loss "));
            var parts = line.Split(' ');
            float before = float.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture);
            float after = float.Parse(parts[3], System.Globalization.CultureInfo.InvariantCulture);
            Assert.True(after < before * 0.5f, line);

            // A mistake in the user's model is a compiler error from the shipped generator, at the expression.
            File.WriteAllText(Path.Combine(app, "Program.cs"), Program.Replace("Linear(Swish(First(Embed(Emb, ids))), W, B)", "MatMul(First(Embed(Emb, ids)), W)"));
            var bad = Dotnet("build -c Release", app);
            Assert.NotEqual(0, bad.Code);
            Assert.Contains("error BERT0100", bad.Text);
        }
        finally
        {
            try { Directory.Delete(work, recursive: true); } catch (IOException) { }
        }
    }
}
