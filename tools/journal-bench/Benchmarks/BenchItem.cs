using Journal;
using Journal.Format;

namespace JournalBench.Benchmarks;

/// <summary>A log item holding a byte array, for the journal benchmarks; its home copy is not written anywhere.</summary>
internal sealed class BenchItem(ulong id, int size) : LogItem(1, id)
{
    public byte[] State = new byte[size];

    public void Resize(int size)
    {
        if (State.Length != size) State = new byte[size];
    }

    public override LogItemSize GetLogSize() => new(1, State.Length);

    public override void FormatLog(LogVectorWriter writer) => writer.AddRegion(State);

    public override ValueTask<bool> WriteBackAsync(Lsn lsn, CancellationToken cancellationToken) => ValueTask.FromResult(true);
}

/// <summary>Temporary files for one benchmark run, deleted afterwards.</summary>
internal sealed class BenchFiles : IDisposable
{
    public BenchFiles(string name)
    {
        Folder = Path.Combine(Path.GetTempPath(), $"journal-bench-{name}-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(Folder);
    }

    public string Folder { get; }

    public string File(string name) => Path.Combine(Folder, name);

    public void Dispose()
    {
        try { Directory.Delete(Folder, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
