using Bert.Data;
using Xunit;

namespace Bert.Tests.Data;

/// <summary>CoNLL tagging files and conlleval's entity counting.</summary>
public class ConllTests
{
    const string Sample = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\n\nPeter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\r\n\n\n";

    [Fact]
    public void ReadsWordsAndTheirLastColumn_SentencesSplitByBlankLines()
    {
        var set = Conll.Parse(Sample, "train.conll");
        Assert.Equal(["B-MISC", "B-ORG", "B-PER", "I-PER", "O"], set.Tags);   // ordinal order
        Assert.Equal(2, set.Sentences.Count);
        Assert.Equal(["EU", "rejects", "German"], set.Sentences[0].Words);
        Assert.Equal([1, 4, 0], set.Sentences[0].Tags);
        Assert.Equal(["Peter", "Blackburn"], set.Sentences[1].Words);
        Assert.Equal([2, 3], set.Sentences[1].Tags);

        // A dev file keeps the training file's ids, and a tag the training file lacks is one sentence naming its line.
        var dev = Conll.Parse("Paris\tB-MISC\n", "dev.conll", set.Tags);
        Assert.Equal([0], dev.Sentences[0].Tags);
        var e = Assert.Throws<DataException>(() => Conll.Parse("Paris B-LOC\nis O\n\nnice B-LOC\n", "dev.conll", set.Tags));
        Assert.Equal("dev.conll line 1 has the tag 'B-LOC', which the training file does not have (B-MISC, B-ORG, B-PER, I-PER, O); fix the tag or add examples of it to the training file.", e.Message);
        e = Assert.Throws<DataException>(() => Conll.Parse("EU B-ORG\nrejects\n", "t.conll"));
        Assert.Equal(2, e.Line);
        Assert.Contains("has one column ('rejects')", e.Message);
        Assert.Contains("holds no tagged words", Assert.Throws<DataException>(() => Conll.Parse("-DOCSTART- O\n\n", "t.conll")).Message);
    }

    [Fact]
    public void Chunks_AreConllevals()
    {
        Assert.Equal([(0, 2, "PER"), (3, 4, "LOC")], Conll.Chunks(["B-PER", "I-PER", "O", "B-LOC"]));
        Assert.Equal([(0, 1, "PER"), (1, 2, "PER")], Conll.Chunks(["B-PER", "B-PER"]));         // B- starts a new one
        Assert.Equal([(1, 3, "LOC")], Conll.Chunks(["O", "I-LOC", "I-LOC"]));                    // I- after O starts one
        Assert.Equal([(0, 1, "PER"), (1, 2, "LOC")], Conll.Chunks(["B-PER", "I-LOC"]));          // a type change ends one
        Assert.Empty(Conll.Chunks(["O", "O"]));
        Assert.True(Conll.IsBio(["B-PER", "I-PER", "O", "LABEL_4"]));
        Assert.False(Conll.IsBio(["NOUN", "VERB"]));
        Assert.False(Conll.IsBio(["O"]));
    }

    [Fact]
    public void EntityScores_CountExactSpansAndTypes()
    {
        // Gold: PER[0,2) LOC[3,4); predicted: PER[0,1) (wrong span) LOC[3,4) (right) ORG[4,5) (spurious).
        var (p, r, f1) = Conll.EntityScores([(["B-PER", "I-PER", "O", "B-LOC", "O"], ["B-PER", "O", "O", "B-LOC", "B-ORG"])]);
        Assert.Equal(1.0 / 3, p, 12);
        Assert.Equal(0.5, r, 12);
        Assert.Equal(0.4, f1, 12);
        Assert.Equal((0.0, 0.0, 0.0), Conll.EntityScores([(["O"], ["O"])]));
    }
}
