"""POST /v1/images/generations and /v1/images/edits; GET /v1/images/{id} serves `url` results."""

from __future__ import annotations

import asyncio
import base64
import math

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from PIL import Image
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from modelserve.api import leases, pipeline
from modelserve.api.caching import CachePlan
from modelserve.api.errors import APIError, bad_request, queue_full
from modelserve.api.image_uploads import decode_upload, to_mask
from modelserve.api.openapi import error_responses, form_schema
from modelserve.api.protocol_images import (
    ImageData,
    ImageEditRequest,
    ImageFields,
    ImageGenerationRequest,
    ImagesResponse,
)
from modelserve.api.streams import unless_disconnected
from modelserve.config_sections import InputLimits
from modelserve.failures import QueueFull, WorkerDied, WorkerStalled
from modelserve.kinds.images import IMAGES, URL_STORE, ImagesModel
from modelserve.runtimes.image_jobs import Cancelled, ImageJob, Mode, UnsupportedMode
from modelserve.runtimes.image_sizes import SizeError, check_size, resolve_size
from modelserve.runtimes.image_store import ImageStore

router = APIRouter()

# The edits form is read by hand (files and fields together), so FastAPI cannot see it.
EDIT_BODY = form_schema(ImageEditRequest, {"image": True, "mask": False})
_FILE = {"type": "string", "format": "binary"}

# diffusers' own defaults, needed to check that steps x strength leaves at least one step.
DEFAULT_STRENGTH = {"image": 0.8, "inpaint": 1.0}


def _size(text: str | None, runtime: ImagesModel) -> tuple[int, int]:
    try:
        return resolve_size(text, runtime.limits)
    except SizeError as exc:
        raise bad_request(str(exc), param="size", code="invalid_size") from None


def _steps(req: ImageFields, runtime: ImagesModel) -> int:
    """The request's fields checked against the model's caps; its denoising steps."""
    opts = runtime.options
    if req.stream:
        raise bad_request("Streaming partial images is not supported.", param="stream")
    if req.n > opts.max_n:
        raise bad_request(f"n must be at most {opts.max_n} for this model.", param="n")
    steps = req.num_inference_steps or opts.default_steps
    if steps > opts.max_steps:
        raise bad_request(f"num_inference_steps must be at most {opts.max_steps}.",
                          param="num_inference_steps")
    return steps


def _job(req: ImageFields, runtime: ImagesModel, size: tuple[int, int],
         mode: Mode = "text") -> ImageJob:
    return ImageJob(prompt=req.prompt, width=size[0], height=size[1],
                    steps=_steps(req, runtime), n=req.n, negative_prompt=req.negative_prompt,
                    guidance_scale=req.guidance_scale, seed=req.seed, mode=mode,
                    output_format=req.output_format)


class _ImageRoute(pipeline.Route[ImageFields, ImagesModel]):
    """What both image routes share: never cached, admitted for concurrency only (requests
    per minute were counted at auth)."""

    cache_route = "images"

    def check_limits(self, limits: InputLimits) -> None:
        pass  # the model's own caps (n, steps, sizes) are checked in `count`

    async def acquire(self) -> ImagesModel:
        return await leases.acquire_kind(self.request, self.req.model, IMAGES)

    def deterministic(self) -> bool:
        return False


class GenerationRoute(_ImageRoute):
    async def count(self, runtime: ImagesModel) -> tuple[int, int]:
        self.job = _job(self.req, runtime, _size(self.req.size, runtime))
        return 0, 0

    async def respond(self, runtime: ImagesModel, plan: CachePlan) -> Response:
        return await _respond(self.request, runtime, self.job, self.req)


async def _respond(request: Request, runtime: ImagesModel, job: ImageJob,
                   req: ImageFields) -> Response:
    try:
        blobs = await unless_disconnected(request, runtime.generate(job), [])
    except QueueFull:
        raise queue_full("image requests") from None
    except (WorkerDied, WorkerStalled):
        raise  # answered 503 model_unavailable, as on every route (api/errors.py)
    except Cancelled:
        raise APIError(499, "client disconnected", code="client_closed_request") from None
    except UnsupportedMode as exc:
        raise bad_request(f"The model '{req.model}' cannot edit images: {exc}", param="model",
                          code="model_not_supported") from None
    except APIError:
        raise
    except Exception as exc:
        raise APIError(500, f"Image generation failed: {exc}", type="server_error") from exc
    data = []
    fmt = req.response_format or runtime.options.default_response_format
    for blob in blobs:
        if fmt == "b64_json":
            data.append(ImageData(b64_json=base64.b64encode(blob).decode()))
        else:
            image_id = runtime.store.put(blob, job.output_format)
            data.append(ImageData(url=f"{str(request.base_url).rstrip('/')}/v1/images/{image_id}"))
    body = ImagesResponse(data=data, output_format=job.output_format,
                          size=f"{job.width}x{job.height}")
    return Response(body.model_dump_json(exclude_none=True), media_type="application/json")


@router.post("/v1/images/generations", responses=error_responses(404, 429, 503))
async def create_image(req: ImageGenerationRequest, request: Request) -> Response:
    return await pipeline.serve(GenerationRoute(req, request))


def _one_file(files: list[UploadFile], param: str) -> UploadFile | None:
    if len(files) > 1:
        raise bad_request(f"Send one '{param}' file; this model edits one image at a time.",
                          param=param)
    return files[0] if files else None


async def _decode(file: UploadFile | None, param: str, max_pixels: int) -> Image.Image | None:
    if file is None:
        return None
    data = await file.read()
    return await asyncio.to_thread(decode_upload, data, param, max_pixels)


def _edit_size(req: ImageEditRequest, runtime: ImagesModel,
               image: Image.Image) -> tuple[int, int]:
    """`size` when sent (the image is resized to it); otherwise the image's own size."""
    if req.size is not None and req.size.strip() != "auto":
        return _size(req.size, runtime)
    try:
        return check_size(*image.size, runtime.limits)
    except SizeError as exc:
        raise bad_request(f"{exc} (the size of 'image'; send 'size' to resize it)",
                          param="image", code="invalid_size") from None


class EditRoute(_ImageRoute):
    """The uploads are decoded in `prepare`: a refused request decodes nothing."""

    def __init__(self, req: ImageEditRequest, request: Request, image: UploadFile,
                 mask: UploadFile | None) -> None:
        super().__init__(req, request)
        self.edit = req
        self.image_file, self.mask_file = image, mask

    async def count(self, runtime: ImagesModel) -> tuple[int, int]:
        _steps(self.req, runtime)
        return 0, 0

    async def prepare(self, runtime: ImagesModel) -> None:
        max_pixels = runtime.options.max_input_pixels
        image = await _decode(self.image_file, "image", max_pixels)
        assert image is not None
        mask = await _decode(self.mask_file, "mask", max_pixels)
        if mask is not None and mask.size != image.size:
            raise bad_request(f"The mask is {mask.size[0]}x{mask.size[1]} but the image is "
                              f"{image.size[0]}x{image.size[1]}; they must be the same size.",
                              param="mask", code="invalid_mask")
        size = _edit_size(self.edit, runtime, image)
        job = _job(self.req, runtime, size, "inpaint" if mask is not None else "image")
        strength = self.edit.strength or DEFAULT_STRENGTH[job.mode]
        if math.floor(job.steps * strength) < 1:
            raise bad_request(f"num_inference_steps x strength ({job.steps} x {strength}) "
                              "must be at least 1.", param="strength")
        job.strength = self.edit.strength
        job.image = image.convert("RGB")
        if job.image.size != size:
            job.image = job.image.resize(size, Image.Resampling.LANCZOS)
        if mask is not None:
            job.mask = to_mask(mask)
            if job.mask.size != size:
                job.mask = job.mask.resize(size, Image.Resampling.NEAREST)
        self.job = job

    async def respond(self, runtime: ImagesModel, plan: CachePlan) -> Response:
        return await _respond(self.request, runtime, self.job, self.req)


@router.post("/v1/images/edits", openapi_extra={"requestBody": EDIT_BODY},
             responses=error_responses(404, 429, 503))
async def edit_image(request: Request) -> Response:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise bad_request("The edits endpoint takes multipart/form-data (an 'image' file and "
                          "form fields).")
    form = await request.form()
    try:
        fields = {k: v for k, v in form.multi_items()
                  if isinstance(v, str) and k not in ("image", "image[]", "mask")}
        try:
            req = ImageEditRequest.model_validate(fields)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from None

        def files(*names: str) -> list[UploadFile]:
            return [v for k, v in form.multi_items() if k in names and isinstance(v, UploadFile)]

        image = _one_file(files("image", "image[]"), "image")
        if image is None:
            raise bad_request("An 'image' file is required.", param="image")
        mask = _one_file(files("mask"), "mask")
        return await pipeline.serve(EditRoute(req, request, image, mask))
    finally:
        await form.close()


@router.post("/v1/images/variations", include_in_schema=False)
async def create_variation() -> Response:
    # Without this route the path matches GET /v1/images/{image_id} and answers 405, which
    # reads as a client bug rather than a missing feature. Left out of the schema: it only
    # ever refuses, so a generated client gains nothing from it.
    raise bad_request("Image variations are not supported by this server; use "
                      "/v1/images/edits with a prompt instead.")


@router.get("/v1/images/{image_id}", response_class=Response, responses={
    200: {"description": "The image",
          "content": {f"image/{f}": {"schema": _FILE} for f in ("png", "jpeg", "webp")}},
    **error_responses(404)})
async def get_image(image_id: str, request: Request) -> Response:
    """An image made with `response_format: url`, until its TTL runs out."""
    stores: list[ImageStore] = request.app.state.registry.kept_values(URL_STORE)
    for store in stores:  # every image model's, loaded or not: urls outlive restarts
        stored = store.get(image_id)
        if stored is not None:
            return Response(stored.data, media_type=stored.media_type,
                            headers={"Cache-Control": "private, max-age=60"})
    raise APIError(404, f"No image '{image_id}': unknown, or its URL has expired.",
                   param="image_id", code="image_not_found")
