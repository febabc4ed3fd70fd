using System.Globalization;

namespace SnapCtl.Demo;

/// <summary>The outcome of verifying one target against its <see cref="ContentModel"/>.</summary>
/// <param name="Target">The target's name.</param>
/// <param name="Sectors">Sectors checked.</param>
/// <param name="Written">Sectors holding data of some write (not zeros).</param>
/// <param name="Uncertain">Sectors that had writes in flight at the crash (either version was accepted).</param>
/// <param name="Mismatches">Sectors holding something the model does not allow.</param>
/// <param name="Examples">The first few mismatches, in words.</param>
internal sealed record VerifyResult(string Target, long Sectors, long Written, long Uncertain, long Mismatches, IReadOnlyList<string> Examples)
{
    /// <summary>True when every sector matched.</summary>
    public bool Ok => Mismatches == 0;
}

/// <summary>Reads a whole target and checks every sector against its model.</summary>
internal static class Verifier
{
    private const int StepSectors = 2048; // 1 MiB per read

    /// <summary>
    /// Verifies <paramref name="model"/>'s target, reading through <paramref name="read"/> (byte offset, buffer).
    /// </summary>
    public static async Task<VerifyResult> VerifyAsync(ContentModel model, Func<long, Memory<byte>, Task> read, IProgress<long>? progress = null)
    {
        var buffer = new byte[StepSectors * SectorPattern.SectorSize];
        long written = 0, uncertain = 0, mismatches = 0;
        var examples = new List<string>();
        for (long first = 0; first < model.Sectors; first += StepSectors)
        {
            int count = (int)Math.Min(StepSectors, model.Sectors - first);
            var mem = buffer.AsMemory(0, count * SectorPattern.SectorSize);
            await read(first * SectorPattern.SectorSize, mem).ConfigureAwait(false);
            var (durable, maybe) = model.Expected(first, count);
            for (int i = 0; i < count; i++)
            {
                long s = first + i;
                int found = SectorPattern.Identify(mem.Span.Slice(i * SectorPattern.SectorSize, SectorPattern.SectorSize), s);
                if (found != 0) written++;
                bool ok = found == durable[i];
                if (maybe.TryGetValue(s, out var alternatives))
                {
                    uncertain++;
                    ok |= found >= 0 && alternatives.Contains(found);
                }
                if (ok) continue;
                mismatches++;
                if (examples.Count < 5)
                {
                    string expected = durable[i].ToString(CultureInfo.InvariantCulture);
                    if (alternatives is not null) expected += " or " + string.Join(" or ", alternatives);
                    string actual = found < 0 ? "unrecognised data" : $"version {found}";
                    examples.Add($"{model.Name}: sector {s}: expected version {expected}, found {actual}");
                }
            }
            progress?.Report(first + count);
        }
        return new VerifyResult(model.Name, model.Sectors, written, uncertain, mismatches, examples);
    }
}
