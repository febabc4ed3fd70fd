using System.Diagnostics;
using System.IO.Compression;
using System.Reflection;
using System.Text;
using System.Xml.Linq;
using Journal.Tests.Tools;

namespace Journal.Tests.Samples;

/// <summary>
/// The packages are worth publishing: <c>dotnet pack</c> of the solution gives exactly the three library packages, each
/// with its metadata, README, XML documentation and symbols package, and the key-value store sample builds and runs in a
/// scratch project that takes them from a local folder feed (its other dependencies from the NuGet cache or registry).
/// </summary>
/// <remarks>
/// One pack (of what the solution build produced, <c>--no-build</c>), one restore and build of the scratch project, a
/// few runs of the sample. The scratch project restores into a packages folder of its own, so a package cached by an
/// earlier run under the same version can never stand in for the one just packed.
/// </remarks>
public sealed class PackageTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromMinutes(5);

    private static readonly (string Id, string Assembly, string? DependsOn)[] Packages =
    [
        ("JournalStore.Journal", "Journal", null),
        ("JournalStore.Snapshot", "Snapshot", "JournalStore.Journal"),
        ("JournalStore.Journal.Testing", "Journal.Testing", "JournalStore.Journal"),
    ];

    [Fact]
    public async Task PackedPackages_CarryTheirMetadata_AndTheSampleBuildsAndRunsOnThemFromALocalFeed()
    {
        using var work = new TempFolder();
        string feed = work["feed"], app = work["app"];
        string version = typeof(MetadataJournal).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()!.InformationalVersion.Split('+')[0];
        string configuration = typeof(PackageTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "Configuration").Value!;

        var pack = await DotnetAsync(RepositoryFiles.Root, "pack", RepositoryFiles.Path("Journal.sln"), "-c", configuration, "--no-build", "-o", feed);
        Assert.True(pack.ExitCode == 0, pack.ToString());
        Assert.Equal(Packages.Select(p => $"{p.Id}.{version}.nupkg").Order(), Directory.GetFiles(feed, "*.nupkg").Select(Path.GetFileName).Order());
        foreach (var (id, assembly, dependsOn) in Packages) CheckPackage(feed, id, version, assembly, dependsOn);

        // The sample's sources, in a project that knows the packages only by id.
        Directory.CreateDirectory(app);
        foreach (var file in Directory.GetFiles(RepositoryFiles.Path("docs/samples/KeyValueStore"), "*.cs"))
            File.Copy(file, Path.Combine(app, Path.GetFileName(file)));
        File.WriteAllText(Path.Combine(app, "kvstore.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <AssemblyName>kvstore</AssemblyName>
                <Nullable>enable</Nullable>
                <ImplicitUsings>enable</ImplicitUsings>
                <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="JournalStore.Journal" Version="{version}" />
                <PackageReference Include="JournalStore.Journal.Testing" Version="{version}" />
                <PackageReference Include="JournalStore.Snapshot" Version="{version}" />
              </ItemGroup>
            </Project>
            """);
        File.WriteAllText(Path.Combine(app, "nuget.config"), NuGetConfig(feed));

        var build = await DotnetAsync(app, "build", app, "-c", "Release", "--disable-build-servers", "-nodeReuse:false", "-p:UseSharedCompilation=false");
        Assert.True(build.ExitCode == 0, build.ToString());
        string assets = File.ReadAllText(Path.Combine(app, "obj", "project.assets.json"));
        foreach (var (id, _, _) in Packages)
        {
            Assert.Contains($"\"{id}/{version}\"", assets);
            Assert.True(Directory.Exists(Path.Combine(app, "packages", id.ToLowerInvariant(), version)), $"{id} was not restored from the feed into the scratch packages folder");
        }

        string kvstore = Path.Combine(app, "bin", "Release", "net10.0", "kvstore.dll");
        string store = work["store"];
        var put = await DotnetAsync(work.Path, kvstore, "put", store, "colour", "blue");
        Assert.True(put.ExitCode == 0, put.ToString());
        var get = await DotnetAsync(work.Path, kvstore, "get", store, "colour");
        Assert.True(get.ExitCode == 0 && get.Stdout == "blue\n", get.ToString());
        var crash = await DotnetAsync(work.Path, kvstore, "crash-check", "--seed", "3", "--puts", "200", "--states", "20");
        Assert.True(crash.ExitCode == 0 && crash.Stdout.Contains("every acknowledged put survived"), crash.ToString());
    }

    /// <summary>The nuspec, the README, the assembly and its documentation, and the symbols package of one package.</summary>
    private static void CheckPackage(string feed, string id, string version, string assembly, string? dependsOn)
    {
        using (var nupkg = ZipFile.OpenRead(Path.Combine(feed, $"{id}.{version}.nupkg")))
        {
            var entries = nupkg.Entries.Select(e => e.FullName).ToHashSet();
            Assert.Superset(new HashSet<string>(["README.md", $"lib/net10.0/{assembly}.dll", $"lib/net10.0/{assembly}.xml", $"{id}.nuspec"]), entries);
            XNamespace ns = "http://schemas.microsoft.com/packaging/2013/05/nuspec.xsd";
            var meta = XDocument.Load(nupkg.GetEntry($"{id}.nuspec")!.Open()).Root!.Element(ns + "metadata")!;
            Assert.Equal(id, meta.Element(ns + "id")!.Value);
            Assert.Equal(version, meta.Element(ns + "version")!.Value);
            Assert.Equal(("expression", "MIT"), ((string)meta.Element(ns + "license")!.Attribute("type")!, meta.Element(ns + "license")!.Value));
            Assert.Equal("README.md", meta.Element(ns + "readme")!.Value);
            Assert.True(meta.Element(ns + "description")!.Value.Length > 80, $"{id}: description too short");
            var dependencies = meta.Descendants(ns + "dependency").Select(d => ((string)d.Attribute("id")!, (string)d.Attribute("version")!)).ToList();
            if (dependsOn is not null) Assert.Contains((dependsOn, version), dependencies);
            Assert.DoesNotContain(dependencies, d => d.Item1.StartsWith("Microsoft.SourceLink", StringComparison.Ordinal));

            using var readme = new StreamReader(nupkg.GetEntry("README.md")!.Open());
            Assert.StartsWith("# JournalStore packages", readme.ReadToEnd());
            if (assembly == "Journal")
            {
                // The documentation's examples are the sample's code.
                using var xml = new StreamReader(nupkg.GetEntry("lib/net10.0/Journal.xml")!.Open());
                Assert.Contains("public sealed class KeyItem : LockedLogItem", xml.ReadToEnd());
            }
        }
        using var snupkg = ZipFile.OpenRead(Path.Combine(feed, $"{id}.{version}.snupkg"));
        var pdb = snupkg.GetEntry($"lib/net10.0/{assembly}.pdb");
        Assert.NotNull(pdb);
        using var pdbStream = pdb.Open();
        var magic = new byte[4];
        pdbStream.ReadExactly(magic);
        Assert.Equal("BSJB"u8.ToArray(), magic); // a portable PDB, as symbol servers take
    }

    /// <summary>
    /// The scratch project's sources: JournalStore packages from the feed only (package source mapping); everything else
    /// from the NuGet cache (as a folder feed) or the registry; restored into the project's own packages folder.
    /// </summary>
    private static string NuGetConfig(string feed)
    {
        string cache = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } p ? p
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        bool haveCache = Directory.Exists(cache);
        return $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <config>
                <add key="globalPackagesFolder" value="packages" />
              </config>
              <packageSources>
                <clear />
                <add key="feed" value="{feed}" />
                {(haveCache ? $"""<add key="cache" value="{cache}" />""" : "")}
                <add key="nuget.org" value="https://api.nuget.org/v3/index.json" protocolVersion="3" />
              </packageSources>
              <packageSourceMapping>
                <packageSource key="feed">
                  <package pattern="JournalStore.*" />
                </packageSource>
                {(haveCache ? """<packageSource key="cache"><package pattern="*" /></packageSource>""" : "")}
                <packageSource key="nuget.org">
                  <package pattern="*" />
                </packageSource>
              </packageSourceMapping>
            </configuration>
            """;
    }

    /// <summary>
    /// Runs <c>dotnet</c> with <paramref name="args"/> in <paramref name="workingDirectory"/>; killed and failed after
    /// <see cref="Limit"/>. The MSBuild and test-host variables this test host inherited are left out, so a nested build
    /// behaves as one started from a shell.
    /// </summary>
    private static async Task<ToolResult> DotnetAsync(string workingDirectory, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var key in psi.Environment.Keys.ToList())
            if (key.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase) || key.StartsWith("VSTEST", StringComparison.OrdinalIgnoreCase)
                || key.StartsWith("TESTINGPLATFORM", StringComparison.OrdinalIgnoreCase))
                psi.Environment.Remove(key);
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        psi.Environment["MSBUILDDISABLENODEREUSE"] = "1";

        using var process = new Process { StartInfo = psi };
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (stdout) stdout.Append(e.Data).Append('\n'); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (stderr) stderr.Append(e.Data).Append('\n'); };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using var cts = new CancellationTokenSource(Limit);
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"dotnet {string.Join(' ', args)} did not finish within {Limit}:\n{stdout}\n{stderr}");
        }
        process.WaitForExit(); // the output is read to its end
        return new ToolResult(process.ExitCode, stdout.ToString(), stderr.ToString(), []);
    }
}
