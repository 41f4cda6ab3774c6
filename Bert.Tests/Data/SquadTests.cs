using System.IO.Compression;
using System.Text;
using Bert.Data;
using Bert.Text;
using Bert.Training;
using FsCheck;
using FsCheck.Fluent;
using Xunit;

namespace Bert.Tests.Data;

/// <summary>SQuAD files, SQuAD's scores, and the windows a question and its context become.</summary>
public class SquadTests
{
    const string V2 = """
        {"version": "v2.0", "data": [{"title": "Normans", "paragraphs": [
          {"context": "The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, a region in France.",
           "qas": [{"question": "In what country is Normandy located?", "id": "q1", "answers": [{"text": "France", "answer_start": 104}, {"text": "France.", "answer_start": 104}], "is_impossible": false},
                   {"question": "Who gave their name to Paris?", "id": "q2", "answers": [], "plausible_answers": [{"text": "Normans", "answer_start": 4}], "is_impossible": true}]}]}]}
        """;

    static string Write(string dir, string name, string text, bool gzip = false)
    {
        string path = Path.Combine(dir, name);
        if (!gzip) File.WriteAllText(path, text);
        else
        {
            using var f = File.Create(path);
            using var z = new GZipStream(f, CompressionLevel.Fastest);
            z.Write(Encoding.UTF8.GetBytes(text));
        }
        return path;
    }

    [Fact]
    public void ReadsSquadJson_AndHuggingFaceJsonLines_GzippedOrNot_ToTheSameQuestions()
    {
        string dir = TempDir.Create();
        try
        {
            var nested = Squad.Read(Write(dir, "dev-v2.0.json", V2));
            Assert.Equal(2, nested.Examples.Count);
            var q1 = nested.Examples[0];
            Assert.Equal(("q1", "In what country is Normandy located?", false), (q1.Id, q1.Question, q1.Impossible));
            Assert.Equal([("France", 104), ("France.", 104)], q1.Answers);
            Assert.Equal("France", q1.Context.Substring(104, 6));
            Assert.True(nested.Examples[1].Impossible);
            Assert.Empty(nested.Examples[1].Answers);
            Assert.True(nested.HasImpossible);

            // The same as transformers' datasets write squad_v2 with to_json (no answers: none).
            string context = q1.Context.Replace("\"", "\\\"");
            string lines = $$$"""
                {"id":"q1","title":"Normans","context":"{{{context}}}","question":"In what country is Normandy located?","answers":{"text":["France","France."],"answer_start":[104,104]}}
                {"id":"q2","title":"Normans","context":"{{{context}}}","question":"Who gave their name to Paris?","answers":{"text":[],"answer_start":[]}}

                """;
            foreach (var set in new[] { Squad.Read(Write(dir, "dev.jsonl", lines)), Squad.Read(Write(dir, "dev.jsonl.gz", lines, gzip: true)), Squad.Read(Write(dir, "pretty.json", System.Text.Json.Nodes.JsonNode.Parse(V2)!.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }), gzip: true)) })
            {
                Assert.Equal(nested.Examples.Select(e => (e.Id, e.Question, e.Context, e.Impossible)), set.Examples.Select(e => (e.Id, e.Question, e.Context, e.Impossible)));
                Assert.Equal(nested.Examples.SelectMany(e => e.Answers), set.Examples.SelectMany(e => e.Answers));
            }
        }
        finally { TempDir.Delete(dir); }
    }

    [Fact]
    public void BadFiles_AreOneSentenceNamingTheProblem()
    {
        string dir = TempDir.Create();
        try
        {
            string Error(string text) => Assert.Throws<DataException>(() => Squad.Read(Write(dir, "bad.json", text))).Message;
            Assert.Contains("does not lie inside its context of 5 characters; fix answer_start", Error("""{"data":[{"paragraphs":[{"context":"Hello","qas":[{"id":"a","question":"q?","answers":[{"text":"world","answer_start":6}]}]}]}]}"""));
            Assert.Contains("has the question id 'a' twice", Error("""{"data":[{"paragraphs":[{"context":"Hello","qas":[{"id":"a","question":"q?","answers":[]},{"id":"a","question":"r?","answers":[]}]}]}]}"""));
            Assert.Contains("is JSON without SQuAD's \"data\" list", Error("""[{"id":"a"}, {"id":"b"}]"""));
            Assert.Contains("is not JSON", Error("""{"data": [ """));
            Assert.Contains("has no \"question\" string", Error("""{"data":[{"paragraphs":[{"context":"Hello","qas":[{"id":"a","answers":[]}]}]}]}"""));
            Assert.Contains("Line 2 of", Error("{\"id\":\"a\",\"question\":\"q\",\"context\":\"c\",\"answers\":{\"text\":[],\"answer_start\":[]}}\n{\"id\":\"b\",\"question\":\"q\"\n"));
            Assert.Contains("equally long \"text\" and \"answer_start\" lists", Error("{\"id\":\"a\",\"question\":\"q\",\"context\":\"c\",\"answers\":{\"text\":[\"c\"],\"answer_start\":[]}}\n{\"id\":\"b\",\"question\":\"q\",\"context\":\"c\",\"answers\":null}\n"));
            Assert.Contains("holds no questions", Error("\n\n"));
        }
        finally { TempDir.Delete(dir); }
    }

    [Fact]
    public void Scores_AreTheOfficialScripts()
    {
        // Normalization: lower case, punctuation and articles out, spaces collapsed.
        Assert.Equal("eiffeltower in paris", Squad.Normalize("  The Eiffel-Tower, in  Paris! "));   // punctuation deleted, not spaced
        Assert.Equal("“ cat”", Squad.Normalize("“The cat”"));   // \b(a|an|the)\b: an article beside a quote mark string.punctuation lacks
        Assert.Equal("theater", Squad.Normalize("the theater"));
        Assert.Equal(1, Squad.ExactMatch("the Eiffel Tower", "Eiffel tower."));
        Assert.Equal(0, Squad.ExactMatch("Eiffel Tower", "Eiffel"));
        Assert.Equal(0.8, Squad.F1("the cat sat", "a cat sat down"), 12);   // 2 common of 2 gold, 3 predicted
        Assert.Equal(0, Squad.F1("cat", "dog"));
        Assert.Equal(1, Squad.F1("", "the"));                               // both empty after normalization
        Assert.Equal(0, Squad.F1("cat", ""));
        // Repeated words count as often as both sides have them.
        Assert.Equal(2 * (2.0 / 3) * (2.0 / 4) / (2.0 / 3 + 2.0 / 4), Squad.F1("x x y z", "x x w"), 12);

        // Against several gold answers: the best; an unanswerable question's gold is the empty answer.
        var e = new QaExample("1", "q", "France.", [("France", 0), ("in France", 0)], false);
        Assert.Equal((1.0, 1.0), Squad.Score(e, "france"));
        var none = new QaExample("2", "q", "c", [], true);
        Assert.Equal((1.0, 1.0), Squad.Score(none, ""));
        Assert.Equal((0.0, 0.0), Squad.Score(none, "Normans"));
    }

    static readonly WordPiece Tok = WordPiece.BertBaseUncased();

    static readonly string[] Words = ["the", "river", "Loire", "runs", "through", "Orléans,", "(1895-1943)", "and", "its", "valley's", "castles", "were", "built", "by", "kings", "x-ray", "42", "state-of-the-art"];

    /// <summary>For random contexts, answers and window sizes: every window fits, its context pieces are the context's in
    /// order, the windows cover every piece and give each exactly one home (its most-context window), and a window that
    /// holds the whole answer labels exactly its pieces, which give back the answer's words from the context.</summary>
    [Fact]
    public void Windows_CoverTheContext_AndLabelTheAnswerWhereItLies()
    {
        var gen = from n in Gen.Choose(1, 120) from seed in Gen.Choose(0, 1 << 30) from maxLen in Gen.Choose(24, 80) from stride in Gen.Choose(1, 40) select (n, seed, maxLen, stride);
        var prop = Prop.ForAll(gen.ToArbitrary(), c =>
        {
            var rng = new Random(c.seed);
            var words = Enumerable.Range(0, c.n).Select(_ => Words[rng.Next(Words.Length)]).ToArray();
            string context = string.Join(rng.Next(2) == 0 ? " " : "  ", words);
            int a = rng.Next(c.n), b = Math.Min(c.n - 1, a + rng.Next(4));
            int start = string.Join(" ", words.Take(a)).Length + (a > 0 ? 1 : 0);
            if (context.Contains("  ")) start = string.Join("  ", words.Take(a)).Length + (a > 0 ? 2 : 0);
            string answer = string.Join(context.Contains("  ") ? "  " : " ", words[a..(b + 1)]);
            Assert.Equal(answer, context.Substring(start, answer.Length));
            var e = new QaExample("x", "Which kings built the castles of the Loire valley?", context, [(answer, start)], false);
            var ctx = QuestionAnsweringJob.Context.Of(Tok, context);
            var windows = QuestionAnsweringJob.Windows(Tok, e, 0, ctx, c.maxLen, c.stride, out bool unfound);
            Assert.False(unfound);
            var homes = new int[ctx.Pieces.Length];
            int labeled = 0;
            foreach (var w in windows)
            {
                Assert.True(w.Ids.Length <= c.maxLen, $"a window of {w.Ids.Length} tokens for --max-len {c.maxLen}");
                Assert.Equal(Tok.ClsId, w.Ids[0]);
                Assert.Equal(Tok.SepId, w.Ids[w.ContextAt - 1]);
                Assert.Equal(Tok.SepId, w.Ids[^1]);
                Assert.Equal(ctx.Pieces[w.From..(w.From + w.Count)], w.Ids[w.ContextAt..^1]);
                Assert.All(w.Types[w.ContextAt..], t => Assert.Equal(1, t));
                Assert.All(w.Types[..w.ContextAt], t => Assert.Equal(0, t));
                for (int i = 0; i < w.Count; i++) if (w.MaxContext[i]) homes[w.From + i]++;
                if (w.Start == 0) { Assert.Equal(0, w.End); continue; }
                labeled++;
                Assert.InRange(w.Start, w.ContextAt, w.End);
                var (text, at) = ctx.Text(context, w.From + w.Start - w.ContextAt, w.From + w.End - w.ContextAt);
                Assert.Equal((answer, start), (text, at));
            }
            Assert.All(homes, h => Assert.Equal(1, h));
            var span = ctx.PiecesOf(start, answer.Length)!.Value;
            // Consecutive windows overlap by at least half a window: an answer that short always lies whole in one.
            int room = c.maxLen - 3 - Math.Min(Tok.Encode(e.Question).Length, (c.maxLen - 3) / 2);
            if (span.Last - span.First + 1 <= room / 2)
                Assert.Contains(windows, w => span.First >= w.From && span.Last < w.From + w.Count);
            bool fits = windows.Any(w => span.First >= w.From && span.Last < w.From + w.Count);
            Assert.Equal(fits ? windows.Count(w => span.First >= w.From && span.Last < w.From + w.Count) : 0, labeled);
            return true;
        });
        Check.One(Config.QuickThrowOnFailure.WithMaxTest(60).WithQuietOnSuccess(true), prop);
    }

    [Fact]
    public void Context_CutsAnswersAtTheContextsOwnCharacters()
    {
        const string context = "Tesla (1856–1943) worked in the U.S. for Edison's company.";
        var ctx = QuestionAnsweringJob.Context.Of(Tok, context);
        var span = ctx.PiecesOf(context.IndexOf("1856", StringComparison.Ordinal), 4)!.Value;
        Assert.Equal(("1856", 7), ctx.Text(context, span.First, span.Last));
        span = ctx.PiecesOf(context.IndexOf("Edison", StringComparison.Ordinal), "Edison's company".Length)!.Value;
        Assert.Equal("Edison's company", ctx.Text(context, span.First, span.Last).Text);
        Assert.Null(ctx.PiecesOf(5, 1));   // the space before "(": no piece

        // An answer_start that points at other words than the answer's (a shifted offset) is not trained on.
        var shifted = new QaExample("s", "When was Tesla born?", context, [("1856", 8)], false);
        QuestionAnsweringJob.Windows(Tok, shifted, 0, ctx, 64, 16, out bool unfound);
        Assert.True(unfound);
        QuestionAnsweringJob.Windows(Tok, shifted with { Answers = [("1856", 7)] }, 0, ctx, 64, 16, out unfound);
        Assert.False(unfound);
    }
}
