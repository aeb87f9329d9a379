from osmlulc.classes import ClassTable
from osmlulc.logs import run_logged
from osmlulc.predict import predict_tile_product

w, p = snakemake.wildcards, snakemake.params
inp, out = snakemake.input, snakemake.output
with run_logged(snakemake.log[0], snakemake.rule, country=w.country, tile=w.tile):
    predict_tile_product(
        inp.stack,
        inp.ensemble,
        ClassTable.from_dict(p.classes),
        out.classified,
        out.probabilities,
        block_size=p.block_size,
        rotations=p.rotations,
        fill_gaps=p.gaps["fill"],
        valid_windows=p.gaps["valid_windows"],
        member_outputs={m: (out[f"classified_{m}"], out[f"probabilities_{m}"]) for m in p.member_maps},
        member_paths={m: inp[m] for m in p.members},
        confidence_path=out.confidence,
        segments_path=inp.get("segments"),
        segment_sums_path=out.get("segment_sums"),
        threads=snakemake.threads,
    )
