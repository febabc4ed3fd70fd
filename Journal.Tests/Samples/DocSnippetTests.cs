using System.Text.RegularExpressions;
using System.Xml.Linq;

namespace Journal.Tests.Samples;

/// <summary>
/// The XML doc examples of the libraries are regions of the key-value store sample, included at compile time
/// (docs/samples/DocSnippets.targets): every include finds its region, the built documentation holds the sample's code,
/// and no doc comment carries C# of its own (which nothing would compile).
/// </summary>
public sealed partial class DocSnippetTests
{
    private static readonly string[] Libraries = ["Journal", "Snapshot", "Journal.Testing"];

    [GeneratedRegex("""<include file="obj/doc-snippets\.xml" path="snippets/snippet\[@id='(\w+)'\]/\*"\s*/>""")]
    private static partial Regex IncludeRegex();

    [GeneratedRegex("""(?m)^\s*#region (\w+)\s*$""")]
    private static partial Regex RegionRegex();

    [GeneratedRegex("""(?m)\b(await|var)\s+\w|\busing\s*\(|=>|\.\w+\(.*\);\s*$""")]
    private static partial Regex CSharpRegex();

    private static Dictionary<string, string> SampleRegions()
    {
        var regions = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var file in Directory.GetFiles(RepositoryFiles.Path("docs/samples/KeyValueStore"), "*.cs"))
        {
            string text = File.ReadAllText(file);
            foreach (Match m in RegionRegex().Matches(text))
            {
                int start = m.Index + m.Length, end = text.IndexOf("#endregion", start, StringComparison.Ordinal);
                Assert.True(end > 0, $"{file}: #region {m.Groups[1].Value} has no #endregion");
                regions.Add(m.Groups[1].Value, text[start..end]);
            }
        }
        return regions;
    }

    private static string NoSpace(string s) => Regex.Replace(s, @"\s+", "");

    [Fact]
    public void EveryIncludeInTheLibraries_NamesARegionOfTheSample()
    {
        var regions = SampleRegions();
        var includes = new List<(string File, string Id)>();
        foreach (var lib in new[] { "Journal", "Snapshot" })
            foreach (var file in Directory.GetFiles(RepositoryFiles.Path(lib), "*.cs", SearchOption.AllDirectories))
            {
                if (file.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}")) continue;
                foreach (Match m in IncludeRegex().Matches(File.ReadAllText(file))) includes.Add((file, m.Groups[1].Value));
            }
        Assert.True(includes.Count >= 5, $"{includes.Count} includes of sample snippets");
        foreach (var (file, id) in includes)
            Assert.True(regions.ContainsKey(id), $"{file}: includes snippet {id}, which no #region of docs/samples/KeyValueStore defines");
        Assert.Subset(regions.Keys.ToHashSet(), new HashSet<string>(["KeyItem", "Put", "Open", "Recovery"]));
    }

    [Fact]
    public void TheBuiltDocumentation_HoldsTheSamplesCode_AndNoUnresolvedInclude()
    {
        var regions = SampleRegions().ToDictionary(kv => NoSpace(kv.Value), kv => kv.Key);
        var doc = XDocument.Load(Path.Combine(AppContext.BaseDirectory, "Journal.xml"));
        var failed = doc.DescendantNodes().OfType<XComment>().Where(c => c.Value.Contains("include", StringComparison.OrdinalIgnoreCase)).ToList();
        Assert.True(failed.Count == 0, $"unresolved includes: {string.Join(" | ", failed.Select(c => c.Parent?.Parent?.Attribute("name")?.Value + ": " + c.Value + " " + c.NextNode))}");

        var samples = doc.Descendants("code").Where(c => (string?)c.Attribute("lang") == "csharp").ToList();
        Assert.True(samples.Count >= 5, $"{samples.Count} C# examples in Journal.xml");
        foreach (var code in samples)
        {
            string member = code.Ancestors("member").First().Attribute("name")!.Value;
            Assert.True(regions.ContainsKey(NoSpace(code.Value)), $"{member}: the example is not a region of the sample as it is now:\n{code.Value}");
        }
        var members = samples.Select(c => c.Ancestors("member").First().Attribute("name")!.Value).ToHashSet();
        Assert.Superset(new HashSet<string>(["T:Journal.LockedLogItem", "T:Journal.MetadataJournal", "T:Journal.Transaction", "T:Journal.IItemRecoveryHandler"]), members);
    }

    [Fact]
    public void NoDocComment_CarriesCSharpThatIsNotTakenFromTheSample()
    {
        foreach (var lib in Libraries)
        {
            var doc = XDocument.Load(Path.Combine(AppContext.BaseDirectory, lib + ".xml"));
            foreach (var code in doc.Descendants("code").Where(c => (string?)c.Attribute("lang") != "csharp"))
            {
                string member = code.Ancestors("member").FirstOrDefault()?.Attribute("name")?.Value ?? "(assembly)";
                Assert.False(CSharpRegex().IsMatch(code.Value),
                    $"{lib}.xml, {member}: a <code> example written in the comment; take it from a #region of docs/samples (DocSnippets.targets):\n{code.Value}");
            }
        }
    }
}
