using System.Security.Cryptography;
using System.Text.RegularExpressions;
using Bert.Cli;
using Bert.Data;
using Xunit;

namespace Bert.Tests.Data;

/// <summary>The embedded Portuguese data and its loaders: the Machado novels as chapter documents, the book reviews
/// (CRLF, one empty review) and the tweets (3 classes in round-robin order, emoji outside the BMP).</summary>
public class PortugueseDataTests
{
    // Sizes and SHA-256 from shared/data/SOURCES.md: the embedded copies are byte for byte the sourced files.
    [Theory]
    [InlineData(DataFile.MachadoCasaVelha, 130317, "5defe6c618f2d0538523e3f6fec112d46b1656b1c7a896ec18c57d1eeb99bd64")]
    [InlineData(DataFile.MachadoDomCasmurro, 383745, "d2d0da51e599361f12347905e9aedd32527912e0676111131bd919f792ef9360")]
    [InlineData(DataFile.MachadoEsau, 423337, "2c6c40a46e0b37157438a0652a859b265c90fcb3f8992dc68035c427dc365ea2")]
    [InlineData(DataFile.MachadoHelena, 338467, "13cb0ae9ac7915a745d3d8a5aa7caa6f73eaadaa3ac1640aa3d988434a1e121b")]
    [InlineData(DataFile.MachadoIaia, 336713, "e7089fa955d334b5cc26ceb3e0e681695ffd18c74d86b3bf64965314f20cda9c")]
    [InlineData(DataFile.MachadoMaoLuva, 207000, "b15a6fb8db0291c4e3228a24534907d5b38344b4ecfae4301b3d8041de16e3b7")]
    [InlineData(DataFile.MachadoMemorialDeAires, 289982, "76343d1bb6ab6dd58cc9623d3862f852ebb706b1b6dc827066d83bffa3e78289")]
    [InlineData(DataFile.MachadoMemoriasBras, 365645, "3cb24e357d9c5ae7c95b4efb4949e7b8838a528577281bc875f6e8e9a9780bba")]
    [InlineData(DataFile.MachadoQuincas, 458506, "dc7b6452a1aa0f9bfe170035b25bcdef8d2b528fe081fe2aa2d5a6d76a2b5be1")]
    [InlineData(DataFile.MachadoRessurreicao, 220972, "ffc33c6f6adf780b16e7a81b8a128b9a1bab86523cca9d111bb9214fc95a6f60")]
    [InlineData(DataFile.BooksPtNeg, 315761, "a43e326e04af58ac9d82ffeb7debc95e28eb5e53069ee7ad60a413cb4f8c6fdd")]
    [InlineData(DataFile.BooksPtPos, 430160, "87bab32b84df82ad6c95f6b2b405666bfed8d204b6663cdda7050981ec84edbe")]
    [InlineData(DataFile.TweetsPtTrainText, 142647, "7d4ef66e226d073e527a2b7164351cf9c26f2297608e872d0c8c586dce9118ac")]
    [InlineData(DataFile.TweetsPtTrainLabels, 3677, "1225a2d319fe4831e1dcb859a51e21c6a8a40c627f4a18c4e872554c385d23f5")]
    [InlineData(DataFile.TweetsPtValText, 23960, "4a0ab0ef9ce458524fc97279c5c3fc47562d21312ca90972feb674f8ba0f8af3")]
    [InlineData(DataFile.TweetsPtValLabels, 647, "2728c5af0a67fdb89dfbab4663e5df365c529bb7c513192e829771ebe16aef65")]
    public void EmbeddedPortugueseFilesAreByteExact(DataFile file, int bytes, string sha256)
    {
        byte[] data = DefaultData.ReadBytes(file);
        Assert.Equal(bytes, data.Length);
        Assert.Equal(sha256, Convert.ToHexStringLower(SHA256.HashData(data)));
    }

    // ---- book reviews ------------------------------------------------------------------------------------------

    [Fact]
    public void BookReviews_2000MinusTheEmptyOneAndRepeats_CrlfGone()
    {
        Assert.Contains("\r\n", DefaultData.ReadText(DataFile.BooksPtNeg)); // the quirk is really there
        var (set, empty, repeated) = Portuguese.BookReviews();
        Assert.Equal(1, empty);
        // 32 reviews differ from an earlier one only by a trailing space (30 negative, 2 positive).
        Assert.Equal(32, repeated);
        Assert.Equal(2000 - 1 - 32, set.Examples.Count);
        Assert.Equal([1000 - 1 - 30, 1000 - 2], set.LabelCounts());
        Assert.Equal(2, set.Classes);
        foreach (var (text, _) in set.Examples)
        {
            Assert.DoesNotContain('\r', text);
            Assert.DoesNotContain('\n', text);
            Assert.DoesNotContain('\t', text);   // review 969 of the negative file held one
            Assert.Equal(text.Trim(), text);     // 819 negative lines ended in a space
            Assert.NotEmpty(text);
        }
        Assert.Equal(set.Examples.Count, set.Examples.Select(e => e.Text).Distinct().Count());
    }

    [Fact]
    public void ParseBookReviews_HandlesCrlfNoFinalBreakEmptyAndRepeatedReviews()
    {
        var (set, empty, repeated) = Portuguese.ParseBookReviews("Ruim demais. \r\n\r\nNão\tgostei\r\nRuim demais.", "Ótimo!\r\n  \r\nAdorei 😍");
        Assert.Equal(2, empty);
        Assert.Equal(1, repeated);
        Assert.Equal([("Ruim demais.", 0), ("Não gostei", 0), ("Ótimo!", 1), ("Adorei 😍", 1)], set.Examples);
    }

    [Fact]
    public void PtReviews_IsAFixedStratifiedSplitThatTheVocabularyCorpusAgreesWith()
    {
        var (train, dev, how) = DataSets.Load("pt-reviews");
        Assert.Equal(1967, train.Examples.Count + dev.Examples.Count);
        Assert.Equal([194, 200], dev.LabelCounts()); // round(969 × 0.2), round(998 × 0.2)
        Assert.Contains("stratified", how);
        var (again, _, _) = DataSets.Load("pt-reviews");
        Assert.Equal(train.Examples, again.Examples);
        // Portuguese.VocabLines uses the same split: every training review and no dev review is in it.
        var lines = Portuguese.VocabLines(taskText: true).ToHashSet();
        Assert.All(train.Examples, e => Assert.Contains(e.Text, lines));
        Assert.All(dev.Examples, e => Assert.DoesNotContain(e.Text, lines));
    }

    // ---- tweets ------------------------------------------------------------------------------------------------

    [Fact]
    public void Tweets_CountsBalanceAndRoundRobinLabels()
    {
        var (train, val) = Portuguese.Tweets();
        Assert.Equal(1839, train.Examples.Count);
        Assert.Equal(324, val.Examples.Count);
        Assert.Equal(3, train.Classes);
        Assert.Equal([613, 613, 613], train.LabelCounts());
        Assert.Equal([108, 108, 108], val.LabelCounts());
        // The files list labels 0,1,2,0,1,2,…: the loader keeps file order (the fine-tuning job shuffles).
        for (int i = 0; i < train.Examples.Count; i++) Assert.Equal(i % 3, train.Examples[i].Label);
        Assert.Equal(2, train.Examples.Single(e => e.Text.Contains("A voz da Vanessa da mata é uma coisa maravilhosa")).Label);
        // Emoji outside the BMP arrive as whole surrogate pairs.
        Assert.Contains(train.Examples, e => e.Text.Any(char.IsSurrogate));
        Assert.All(train.Examples.Concat(val.Examples), e => Assert.True(IsWellFormed(e.Text), e.Text));
        Assert.Contains(train.Examples, e => e.Text.Contains("@user"));
        Assert.Empty(train.Examples.Select(e => e.Text).Intersect(val.Examples.Select(e => e.Text)));
    }

    static bool IsWellFormed(string s)
    {
        for (int i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) { i++; continue; }
            if (char.IsSurrogate(s[i])) return false;
        }
        return true;
    }

    [Fact]
    public void PtTweets_IsTrainToVal()
    {
        var (train, dev, how) = DataSets.Load("pt-tweets");
        Assert.Equal(1839, train.Examples.Count);
        Assert.Equal(324, dev.Examples.Count);
        Assert.Contains("train → val", how);
    }

    [Fact]
    public void ParseTweets_RefusesMismatchedFilesAndBadLabels()
    {
        var set = Portuguese.ParseTweets("bom\nmeh\nruim", "2\n1\n0", "t");
        Assert.Equal([("bom", 2), ("meh", 1), ("ruim", 0)], set.Examples);
        var e = Assert.Throws<DataException>(() => Portuguese.ParseTweets("a\nb", "0", "t"));
        Assert.Contains("2 tweets but 1 labels", e.Message);
        e = Assert.Throws<DataException>(() => Portuguese.ParseTweets("a", "3", "t"));
        Assert.Contains("not 0 (negative), 1 (neutral) or 2 (positive)", e.Message);
    }

    [Fact]
    public void EnglishSetsAreUnchanged()
    {
        Assert.Equal(["amazon", "imdb", "yelp", "sst2"], DataSets.Named);
        var e = Assert.Throws<ArgumentException>(() => DataSets.Load("pt-nothing"));
        Assert.Contains("pt-reviews", e.Message);
    }

    // ---- the novels --------------------------------------------------------------------------------------------

    [Fact]
    public void EveryNovelHasSeveralDocuments_OnePerChapter()
    {
        foreach (var novel in Portuguese.Novels)
        {
            string text = DefaultData.ReadText(novel);
            var docs = Portuguese.NovelDocuments(text);
            Assert.True(docs.Count > 1, $"{novel}: {docs.Count} documents");
            int chapters = TextSource.Lines(text).Count(l => l.Line.StartsWith("CAPÍTULO", StringComparison.Ordinal));
            bool frontMatter = !TextSource.Lines(text).Skip(2).First().Line.StartsWith("CAPÍTULO", StringComparison.Ordinal);
            if (chapters > 0) Assert.Equal(chapters + (frontMatter ? 1 : 0), docs.Count);
            foreach (var s in docs.SelectMany(d => d))
            {
                Assert.DoesNotContain("CAPÍTULO", s);
                Assert.NotEqual("FIM", s);
                Assert.Equal(s.Trim(), s);
                Assert.DoesNotContain("  ", s);
            }
        }
    }

    [Fact]
    public void DomCasmurro_StartsWithItsFirstChapter()
    {
        var docs = Portuguese.NovelDocuments(DefaultData.ReadText(DataFile.MachadoDomCasmurro));
        // Title line, CAPÍTULO PRIMEIRO and the chapter title DO TÍTULO are dropped; the wrapped lines are joined.
        Assert.Equal("Uma noite destas, vindo da cidade para o Engenho Novo, encontrei no trem da Central um rapaz aqui do bairro, que eu conheço de vista e de chapéu.", docs[0][0]);
        Assert.Equal("Cumprimentou-me, sentou-se ao pé de mim, falou da Lua e dos ministros, e acabou recitando-me versos.", docs[0][1]);
    }

    [Fact]
    public void MemorialDeAires_IsCutAtItsDiaryDates()
    {
        string text = DefaultData.ReadText(DataFile.MachadoMemorialDeAires);
        int dates = TextSource.Lines(text).Count(l => Regex.IsMatch(l.Line, @"^\d{1,2} de [a-zç]+(,.*)?$") && l.Line.Length < 50);
        var docs = Portuguese.NovelDocuments(text);
        Assert.Equal(dates + 1, docs.Count); // the epigraph and the advertência come first
        Assert.DoesNotContain(docs.SelectMany(d => d), s => s is "1888" or "1889" or "9 de janeiro");
        Assert.StartsWith("Ora bem, faz hoje um ano que voltei definitivamente da Europa.", docs[1][0]);
    }

    [Fact]
    public void HyphensAtTheWrapStayInTheirWord()
    {
        var iaia = Portuguese.NovelDocuments(DefaultData.ReadText(DataFile.MachadoIaia)).SelectMany(d => d).ToList();
        Assert.Contains(iaia, s => s.Contains("estava na lua-de-mel, uma lua-de-mel que durava mais de um ano."));
        Assert.DoesNotContain(iaia, s => s.Contains("lua-de- mel"));
        var luva = Portuguese.NovelDocuments(DefaultData.ReadText(DataFile.MachadoMaoLuva)).SelectMany(d => d);
        Assert.Contains(luva, s => s.Contains("viessem a casar-se"));
    }

    [Fact]
    public void Paragraphs_BreakAtDialogueTurnsAndShortLines()
    {
        string[] lines =
        [
            "Aqui está o que contava, há muitos anos, um velho cônego da Capela",
            "Imperial:",
            "— Não desejo ao meu maior inimigo o que me aconteceu no mês de",
            "abril. Tinha-me dado na cabeça escrever uma obra política, a",
            "história do reinado.",
            "— Não.",
            "— Sim, disse ele. — Vamos embora!",
            "Foi um dia longo, de chuva e de vento, e ninguém quis sair de",
            "casar-",
            "se.",
        ];
        // Median length 33 → short below 23.1: "Imperial:" (a colon) and "história do reinado." end paragraphs;
        // "— Não." ends one because the next line opens a turn; "— Sim, … embora!" is neither short nor followed
        // by a turn, so the next line joins it; a hyphen at the end of a line stays in its word.
        Assert.Equal(
        [
            "Aqui está o que contava, há muitos anos, um velho cônego da Capela Imperial:",
            "— Não desejo ao meu maior inimigo o que me aconteceu no mês de abril. Tinha-me dado na cabeça escrever uma obra política, a história do reinado.",
            "— Não.",
            "— Sim, disse ele. — Vamos embora! Foi um dia longo, de chuva e de vento, e ninguém quis sair de casar-se.",
        ], Portuguese.Paragraphs(lines));
    }

    [Fact]
    public void NovelDocuments_ChaptersParagraphsAndDialogueSentences()
    {
        string novel = string.Join('\n',
            "Um Romance", "", "ADVERTÊNCIA", "Este livro é curto.", "CAPÍTULO PRIMEIRO", "DO COMEÇO",
            "Era uma vez. Ela disse:", "— Não. — Sim, disse ele. — Vamos!", "CAPÍTULO II", "Acabou-se a história.", "FIM") + "\n";
        var docs = Portuguese.NovelDocuments(novel);
        Assert.Equal(3, docs.Count);
        Assert.Equal(["Este livro é curto."], docs[0]);
        // "Ela disse:" ends a paragraph (the next line opens a turn); the turns split at each dash.
        Assert.Equal(["Era uma vez.", "Ela disse:", "— Não.", "— Sim, disse ele.", "— Vamos!"], docs[1]);
        Assert.Equal(["Acabou-se a história."], docs[2]);
    }

    [Fact]
    public void SentenceSplitter_StartsASentenceAtADialogueDash()
    {
        Assert.Equal(["— Não.", "— Sim, disse ele.", "— Vamos!"], Pretraining.SplitSentences("— Não. — Sim, disse ele. — Vamos!"));
        // A dash after the end that is followed by a lower-case word continues the turn ("— disse ele").
        Assert.Equal(["— Não! — disse ele."], Pretraining.SplitSentences("— Não! — disse ele."));
        Assert.Equal(["O Sr. Brás chegou."], Pretraining.SplitSentences("O Sr. Brás chegou."));
    }

    [Fact]
    public void MachadoCorpus_IsNamedForPretrainingAndVocab()
    {
        var (docs, how) = DataSets.Corpus(["machado"]);
        Assert.Contains("Machado", how);
        Assert.Equal(Portuguese.Novels.Sum(n => Portuguese.NovelDocuments(DefaultData.ReadText(n)).Count), docs.Count);
        Assert.True(docs.Count > 600, $"{docs.Count} documents");
        int sentences = docs.Sum(d => d.Count);
        Assert.True(sentences > 25_000, $"{sentences} sentences");
        Assert.Equal(sentences, DataSets.VocabLines(["machado"]).Count());
        // The default (no corpus named) is still the English one.
        Assert.Contains("Shakespeare", DataSets.Corpus(null).How);
    }
}
