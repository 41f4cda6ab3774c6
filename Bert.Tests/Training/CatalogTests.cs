using Bert.Models;
using Xunit;

namespace Bert.Tests.Training;

/// <summary>The catalog names its models without touching them (their static initializers run on first use of
/// <c>Info</c>), so each entry's name, size, head and classes must agree with the model it loads.</summary>
public class CatalogTests
{
    [Fact]
    public void EveryEntry_NamesTheModelItLoads()
    {
        foreach (var e in Catalog.All)
        {
            Assert.Equal(e.Name, e.Info.Name);
            Assert.Equal(e.Name, e.Create().Info.Name);
            if (e.Head == "classifier") Assert.Equal(e.Classes, (int)e.Info.Constants.GetValueOrDefault("Classes", 2));
        }
        Assert.Equal(Catalog.All.Count, Catalog.All.Select(e => e.Name).Distinct().Count());
        Assert.Same(Catalog.ByName("BertMiniClassifier"), Catalog.Get("mini", "classifier"));
        Assert.Contains("no model named 'BertHugeClassifier'", Assert.Throws<ArgumentException>(() => Catalog.ByName("BertHugeClassifier")).Message);
    }
}
