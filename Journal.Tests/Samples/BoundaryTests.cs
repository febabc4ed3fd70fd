using System.Reflection;
using System.Runtime.CompilerServices;
using Journal.Testing;

namespace Journal.Tests.Samples;

/// <summary>
/// The Journal/Snapshot boundary is the compiler's: the journal opens its internals only to its own tests and its
/// benchmark, so the snapshot store, jreplay, snapctl and the test devices are built on the journal's public API alone,
/// as any user's code is.
/// </summary>
public sealed class BoundaryTests
{
    private static string[] FriendsOf(Assembly a) =>
        a.GetCustomAttributes<InternalsVisibleToAttribute>().Select(x => x.AssemblyName).Order(StringComparer.Ordinal).ToArray();

    [Fact]
    public void The_journal_shows_its_internals_to_its_tests_and_benchmark_only()
    {
        Assert.Equal(["Journal.Tests", "journal-bench"], FriendsOf(typeof(MetadataJournal).Assembly));
        Assert.Equal(["Journal.Tests"], FriendsOf(typeof(CrashSimBlockDevice).Assembly));
    }

    [Fact]
    public void The_snapshot_store_references_the_journal_as_a_user_does()
    {
        var store = typeof(global::Snapshot.SnapshotStore).Assembly;
        var journal = typeof(MetadataJournal).Assembly.GetName().Name;
        Assert.Contains(store.GetReferencedAssemblies(), r => r.Name == journal);
        // The store does not depend on the test devices.
        Assert.DoesNotContain(store.GetReferencedAssemblies(), r => r.Name == typeof(CrashSimBlockDevice).Assembly.GetName().Name);
    }
}
