using Journal.Tests.Tools;
using Snapshot;
using Snapshot.Storage;

namespace Journal.Tests.Campaign;

/// <summary>
/// The store lock's rule (<see cref="FileDeviceProvider"/>): an flock on the store folder itself, so no file a user can
/// delete stands between two openers; exclusive for a writer, shared for read-only opens.
/// </summary>
public sealed class FolderLockTests
{
    [Fact]
    public void The_lock_is_on_the_folder_and_creates_no_file_in_it()
    {
        using var dir = new TempFolder();
        using (FileDeviceProvider.Instance.Lock(dir.Path))
        {
            Assert.Empty(Directory.EnumerateFileSystemEntries(dir.Path));
            Assert.True(ProcWatch.HasOpen(Environment.ProcessId, dir.Path), "the folder itself is held open while locked");
            Assert.Throws<StoreInUseException>(() => FileDeviceProvider.Instance.Lock(dir.Path));
        }
        // Released on dispose: the next opener gets it.
        FileDeviceProvider.Instance.Lock(dir.Path).Dispose();
    }

    [Fact]
    public void Shared_locks_exclude_the_exclusive_one_and_each_other_not()
    {
        using var dir = new TempFolder();
        using (FileDeviceProvider.Instance.LockShared(dir.Path))
        using (FileDeviceProvider.Instance.LockShared(dir.Path))
        {
            Assert.Throws<StoreInUseException>(() => FileDeviceProvider.Instance.Lock(dir.Path));
        }
        using (FileDeviceProvider.Instance.Lock(dir.Path))
        {
            Assert.Throws<StoreInUseException>(() => FileDeviceProvider.Instance.LockShared(dir.Path));
        }
    }

    [Fact]
    public void A_missing_folder_is_not_reported_as_in_use()
    {
        using var dir = new TempFolder();
        Assert.Throws<DirectoryNotFoundException>(() => FileDeviceProvider.Instance.Lock(dir["nothing-here"]));
    }
}
