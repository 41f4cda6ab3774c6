using System.Security.Cryptography;
using Bert.Data;
using Xunit;

namespace Bert.Tests.Data;

public class DefaultDataTests
{
    // SHA-256 and sizes from shared/data/SOURCES.md (repeated in Bert.Models/Resources/ATTRIBUTION.md): the embedded
    // copies must be byte for byte the sourced files.
    [Theory]
    [InlineData(DataFile.BertBaseUncasedVocab, 231508, "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3")]
    [InlineData(DataFile.TinyShakespeare, 1115394, "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed")]
    [InlineData(DataFile.WikiText2RawTest, 1290547, "4f3e427e4aff23acff917a8a51aeae21bf12832256e26914c8fc250dcef4103c")]
    [InlineData(DataFile.UciAmazon, 58226, "47003fc0a0d4840b00e96e715b6189bad09e7443a3da41c4cbe12ffc79f86ae3")]
    [InlineData(DataFile.UciImdb, 85285, "aef2e49e3da25714d61175e3a6e68eeef74a20a2f914318dc3be9947ea86512d")]
    [InlineData(DataFile.UciYelp, 61320, "c76468b7b5c6e56a0804d728345c5f84aa2142ddb214420f61cc9cfd4c00d2ea")]
    [InlineData(DataFile.Sst2Train, 738844, "71c04bcc41291fa47454dd670df701b14ee9249156babeaac404cfe2c8d74338")]
    [InlineData(DataFile.Sst2Dev, 94400, "02fedc82855dbdcabe82c65ed1af6c6570788eaac51073cdb35ee8c7784426d1")]
    public void EmbeddedFilesAreByteExact(DataFile file, int bytes, string sha256)
    {
        byte[] data = DefaultData.ReadBytes(file);
        Assert.Equal(bytes, data.Length);
        Assert.Equal(sha256, Convert.ToHexStringLower(SHA256.HashData(data)));
    }

    [Fact]
    public void EveryFileHasAResourceAndText()
    {
        foreach (var file in DefaultData.All)
        {
            Assert.StartsWith("Bert.Data.", DefaultData.ResourceName(file));
            Assert.NotEmpty(DefaultData.ReadText(file));
        }
        Assert.Equal(24, DefaultData.All.Count); // 8 English files, 10 novels, 2 review files, 4 tweet files
    }

    [Fact]
    public void LinesSplitOnLineFeedOnly()
    {
        // NEL (U+0085) and U+2028 stay inside their line; a CR before LF is trimmed; a last LF adds no line.
        var lines = TextSource.Lines("a\u0085b\r\nc\u2028d\n\ne").ToList();
        Assert.Equal([(1, "a\u0085b"), (2, "c\u2028d"), (3, ""), (4, "e")], lines);
        Assert.Equal(2891, TextSource.Lines(DefaultData.ReadText(DataFile.WikiText2RawTest)).Count());
        Assert.Equal(40000, TextSource.Lines(DefaultData.ReadText(DataFile.TinyShakespeare)).Count());
    }
}
